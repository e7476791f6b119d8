// Dense projections: see dense.h. Row blocks of fixed size are the unit of
// parallel work, so results do not depend on the thread count.
#include "dense.h"

#include <Eigen/Dense>
#include <algorithm>
#ifdef __AVX__
#include <immintrin.h>
#endif

#include "parallel.h"

namespace mh {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class T>
using RowVec = Eigen::Matrix<T, 1, Eigen::Dynamic>;

// Rows per parallel task: large enough for an efficient GEMM, a function of
// the shapes only so the split never depends on the number of threads.
// (Measured with Eigen 3.3 on AVX2+FMA: 512 rows run 25-35% faster than 256
// when in*out <= 256*512, e.g. 256x256 kernels; 256 rows are better above;
// fewer than 4 blocks would leave threads idle.)
idx row_block(idx rows, idx in, idx out) {
  return (in * out <= 256 * 512 && rows >= 4 * 512) ? 512 : 256;
}
// Kernel rows (input features) per task in the weight gradient.
constexpr idx kFeatureBlock = 64;

long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

// dst[i] = static_cast<D>(src[i]) for i < n (the same rounding either way;
// -O2 does not vectorise these loops by itself).
template <class S, class D>
void convert_run(const S* src, idx n, D* dst) {
  for (idx i = 0; i < n; ++i) dst[i] = static_cast<D>(src[i]);
}
template <>
[[maybe_unused]] void convert_run<double, double>(const double* src, idx n, double* dst) {
  std::copy(src, src + n, dst);
}
#ifdef __AVX__
template <>
[[maybe_unused]] void convert_run<double, float>(const double* src, idx n, float* dst) {
  idx i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_ps(dst + i, _mm256_cvtpd_ps(_mm256_loadu_pd(src + i)));
    _mm_storeu_ps(dst + i + 4, _mm256_cvtpd_ps(_mm256_loadu_pd(src + i + 4)));
  }
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}
template <>
[[maybe_unused]] void convert_run<float, double>(const float* src, idx n, double* dst) {
  idx i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_pd(dst + i, _mm256_cvtps_pd(_mm_loadu_ps(src + i)));
    _mm256_storeu_pd(dst + i + 4, _mm256_cvtps_pd(_mm_loadu_ps(src + i + 4)));
  }
  for (; i < n; ++i) dst[i] = static_cast<double>(src[i]);
}
#endif

}  // namespace

template <class T>
void dense_forward(const T* x, idx rows, idx in, const T* w, const T* b, idx out, T* y,
                   int threads) {
  Eigen::Map<const RowMat<T>> W(w, in, out);
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  const idx rb = row_block(rows, in, out);
  parallel_for(n_blocks(rows, rb), used, [&](long blk) {
    const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
    Eigen::Map<const RowMat<T>> X(x + r0 * in, nr, in);
    Eigen::Map<RowMat<T>> Y(y + r0 * out, nr, out);
    Y.noalias() = X * W;
    if (b) Y.rowwise() += Eigen::Map<const RowVec<T>>(b, out);
  });
}

template <class T>
void dense_forward_blocks(const T* x, idx rows, idx in, const T* w, const T* b, idx out,
                          int threads, const std::function<void(idx, idx, const T*)>& store) {
  Eigen::Map<const RowMat<T>> W(w, in, out);
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  const idx rb = row_block(rows, in, out);
  parallel_for(n_blocks(rows, rb), used, [&](long blk) {
    const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
    Eigen::Map<const RowMat<T>> X(x + r0 * in, nr, in);
    Buffer<T> ybuf(static_cast<size_t>(nr * out));
    Eigen::Map<RowMat<T>> Y(ybuf.data(), nr, out);
    Y.noalias() = X * W;
    if (b) Y.rowwise() += Eigen::Map<const RowVec<T>>(b, out);
    store(r0, nr, ybuf.data());
  });
}

namespace {

// Block `blk` of a column-major product (see dense_forward_blocks_colmajor).
template <class T>
void colmajor_block(const ColMajorProduct<T>& p, idx rb, long blk) {
  Eigen::Map<const RowMat<T>> W(p.w, p.in, p.out);
  const idx r0 = blk * rb, nr = std::min(rb, p.rows - r0);
  // The block of x, converted: column-major (nr, in), each column a
  // contiguous run of the source.
  Buffer<T> xbuf(static_cast<size_t>(nr * p.in));
  for (idx f = 0; f < p.in; ++f) convert_run(p.x + f * p.ldx + r0, nr, xbuf.data() + f * nr);
  Eigen::Map<const ColMat<T>> X(xbuf.data(), nr, p.in);
  Buffer<T> ybuf(static_cast<size_t>(nr * p.out));
  Eigen::Map<RowMat<T>> Y(ybuf.data(), nr, p.out);
  Y.noalias() = X * W;
  if (p.b) Y.rowwise() += Eigen::Map<const RowVec<T>>(p.b, p.out);
  p.store(r0, nr, ybuf.data());
}

}  // namespace

template <class T>
void dense_forward_blocks_colmajor(const std::vector<ColMajorProduct<T>>& products, int threads) {
  // Task list: (product, block), products in order.
  std::vector<std::pair<size_t, long>> tasks;
  std::vector<idx> rbs;
  double macs = 0;
  for (size_t k = 0; k < products.size(); ++k) {
    const ColMajorProduct<T>& p = products[k];
    rbs.push_back(row_block(p.rows, p.in, p.out));
    for (long blk = 0; blk < n_blocks(p.rows, rbs.back()); ++blk) tasks.emplace_back(k, blk);
    macs += static_cast<double>(p.rows) * p.in * p.out;
  }
  parallel_for(static_cast<long>(tasks.size()), threads_for_macs(macs, threads), [&](long i) {
    colmajor_block(products[tasks[i].first], rbs[tasks[i].first], tasks[i].second);
  });
}

template <class T>
void dense_forward_blocks_colmajor(const double* x, idx ldx, idx rows, idx in, const T* w,
                                   const T* b, idx out, int threads,
                                   const std::function<void(idx, idx, const T*)>& store) {
  dense_forward_blocks_colmajor<T>({ColMajorProduct<T>{x, ldx, rows, in, w, b, out, store}},
                                   threads);
}

template <class T>
void dense_forward_gather_colmajor(const T* x, const idx* x_row, idx rows, idx in, const T* w,
                                   const T* b, idx out, double* y, idx ldy, const idx* y_col,
                                   int threads) {
  Eigen::Map<const RowMat<T>> W(w, in, out);
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  const idx rb = row_block(rows, in, out);
  parallel_for(n_blocks(rows, rb), used, [&](long blk) {
    const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
    Buffer<T> xbuf(static_cast<size_t>(nr * in));
    for (idx i = 0; i < nr; ++i) {
      const T* src = x + x_row[r0 + i] * in;
      std::copy(src, src + in, xbuf.data() + i * in);
    }
    Eigen::Map<const RowMat<T>> X(xbuf.data(), nr, in);
    Buffer<T> ybuf(static_cast<size_t>(nr * out));
    Eigen::Map<ColMat<T>> Y(ybuf.data(), nr, out);  // each column a run of the destination
    Y.noalias() = X * W;
    if (b) Y.rowwise() += Eigen::Map<const RowVec<T>>(b, out);
    for (idx j = 0; j < out; ++j) {
      convert_run(ybuf.data() + j * nr, nr, y + (y_col ? y_col[j] : j) * ldy + r0);
    }
  });
}

template <class T>
void dense_backward_input(const T* dy, idx rows, idx out, const T* w, idx in, T* dx,
                          bool accumulate, int threads) {
  Eigen::Map<const RowMat<T>> W(w, in, out);
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  const idx rb = row_block(rows, in, out);
  parallel_for(n_blocks(rows, rb), used, [&](long blk) {
    const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
    Eigen::Map<const RowMat<T>> dY(dy + r0 * out, nr, out);
    Eigen::Map<RowMat<T>> dX(dx + r0 * in, nr, in);
    if (accumulate) {
      dX.noalias() += dY * W.transpose();
    } else {
      dX.noalias() = dY * W.transpose();
    }
  });
}

template <class T>
void dense_backward_weights(const T* x, const T* dy, idx rows, idx in, idx out, T* dw, T* db,
                            int threads) {
  Eigen::Map<const RowMat<T>> X(x, rows, in);
  Eigen::Map<const RowMat<T>> dY(dy, rows, out);
  Eigen::Map<RowMat<T>> dW(dw, in, out);
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  // Each task owns a band of kernel rows: dW[f0:f1, ] = X[, f0:f1]^T dY.
  parallel_for(n_blocks(in, kFeatureBlock), used, [&](long blk) {
    const idx f0 = blk * kFeatureBlock, nf = std::min(kFeatureBlock, in - f0);
    dW.middleRows(f0, nf).noalias() = X.middleCols(f0, nf).transpose() * dY;
  });
  if (db) {
    Eigen::Map<RowVec<T>> dB(db, out);
    dB.setZero();
    for (idx r = 0; r < rows; ++r) dB += dY.row(r);
  }
}

#define MH_INSTANTIATE_DENSE(T)                                                              \
  template void dense_forward<T>(const T*, idx, idx, const T*, const T*, idx, T*, int);      \
  template void dense_forward_blocks<T>(const T*, idx, idx, const T*, const T*, idx, int,     \
                                        const std::function<void(idx, idx, const T*)>&);     \
  template void dense_forward_blocks_colmajor<T>(const double*, idx, idx, idx, const T*,        \
                                                 const T*, idx, int,                             \
                                                 const std::function<void(idx, idx, const T*)>&); \
  template void dense_forward_blocks_colmajor<T>(const std::vector<ColMajorProduct<T>>&, int); \
  template void dense_forward_gather_colmajor<T>(const T*, const idx*, idx, idx, const T*,       \
                                                 const T*, idx, double*, idx, const idx*, int);  \
  template void dense_backward_input<T>(const T*, idx, idx, const T*, idx, T*, bool, int);   \
  template void dense_backward_weights<T>(const T*, const T*, idx, idx, idx, T*, T*, int);

MH_INSTANTIATE_DENSE(float)
MH_INSTANTIATE_DENSE(double)

}  // namespace mh
