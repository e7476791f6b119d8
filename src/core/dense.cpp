// Dense projections: see dense.h. Row blocks of fixed size are the unit of
// parallel work, so results do not depend on the thread count.
#include "dense.h"

#include <Eigen/Dense>
#include <algorithm>
#include <stdexcept>
#include <type_traits>
#ifdef __AVX__
#include <immintrin.h>
#endif

#include "parallel.h"
#include "tile_gemm.h"

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
// fewer than 4 blocks would leave threads idle. With Eigen 3.4, 1024 rows
// save a further ~0.5 ms of the 32/128/256 forward call: the kernel is
// packed once per block.)
idx row_block(idx rows, idx in, idx out) {
  if (in * out <= 256 * 512 && rows >= 4 * 1024) return 1024;
  return (in * out <= 256 * 512 && rows >= 4 * 512) ? 512 : 256;
}
// The backward kernels keep blocks of at most 512 rows: their tasks are
// longer (two products per block), and finer tasks let a thread that starts
// late (mapping in the fresh input gradients) share the work evenly.
idx backward_row_block(idx rows, idx in, idx out) {
  return std::min<idx>(512, row_block(rows, in, out));
}
// Kernel rows (input features) per task in the weight gradient.
constexpr idx kFeatureBlock = 64;
// At most this many partial weight gradients in dense_backward_colmajor_dy.
constexpr long kWeightGroups = 8;

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

// convert_run that also returns whether every source value is finite: x - x
// is 0 for a finite x and NaN for NA, NaN and +-Inf, so a sum of those
// differences is 0 exactly when all are finite.
template <class D>
bool convert_run_finite(const double* src, idx n, D* dst) {
  double acc = 0;
  for (idx i = 0; i < n; ++i) {
    acc += src[i] - src[i];
    dst[i] = static_cast<D>(src[i]);
  }
  return acc == 0;
}
#ifdef __AVX__
template <>
[[maybe_unused]] bool convert_run_finite<float>(const double* src, idx n, float* dst) {
  __m256d acc = _mm256_setzero_pd();
  idx i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256d a = _mm256_loadu_pd(src + i), b = _mm256_loadu_pd(src + i + 4);
    acc = _mm256_add_pd(acc, _mm256_add_pd(_mm256_sub_pd(a, a), _mm256_sub_pd(b, b)));
    _mm_storeu_ps(dst + i, _mm256_cvtpd_ps(a));
    _mm_storeu_ps(dst + i + 4, _mm256_cvtpd_ps(b));
  }
  bool ok = _mm256_movemask_pd(_mm256_cmp_pd(acc, acc, _CMP_UNORD_Q)) == 0;
  for (; i < n; ++i) {
    ok = ok && src[i] - src[i] == 0;
    dst[i] = static_cast<float>(src[i]);
  }
  return ok;
}
#endif

// Converts `n` doubles into dst; when `check` is set, returns whether all
// were finite (else true without looking).
template <class D>
bool convert_run(const double* src, idx n, D* dst, bool check) {
  if (check) return convert_run_finite(src, n, dst);
  convert_run(src, n, dst);
  return true;
}

// Y = X W + b (b may be null): Y starts as the bias on every row and the
// product is accumulated onto it. Eigen's `Y = X * W` zeroes Y before its
// GEMM accumulates anyway, so this saves the separate bias pass over Y.
template <class XM, class WM, class YM, class T>
void product_plus_bias(const XM& X, const WM& W, const T* b, YM& Y) {
  if (b) {
    Y.rowwise() = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b, Y.cols());
    Y.noalias() += X * W;
  } else {
    Y.noalias() = X * W;
  }
}

// dW (+)= X^T dY and dB (+)= column sums of dY: `first` starts the sums
// (one block of rows of a weight gradient summed block by block).
template <class XM, class YM, class WM, class BM>
void add_weight_grads(const XM& X, const YM& dY, bool first, WM& dW, BM& dB) {
  if (first) {
    dW.noalias() = X.transpose() * dY;
    dB = dY.colwise().sum();
  } else {
    dW.noalias() += X.transpose() * dY;
    dB += dY.colwise().sum();
  }
}

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

// The packed float kernel of the column-major products (AVX2 + FMA builds):
// the weights are packed once per call into strips of 16 columns, each block
// of x is converted from R's doubles straight into panels of 6 rows, and
// tile_gemm.h's 6 x 16 register block runs over them starting from the bias.
// Eigen's GEMM instead packs both operands on every block and needs the bias
// (or zeros) written first: measured at 32/128/256, packing the kernel per
// block and the bias pass were ~10% of the projections' time.
//
// w (in, out) as strips of 16 columns: data[(s * in + p) * 16 + j] =
// w[p, 16 s + j], zero past `out`.
struct PackedWeights {
  Buffer<float> data;
  idx in = 0, out = 0;
};

#ifdef MH_TILE_GEMM_AVX2
constexpr bool kPackedProjection = true;
#else
constexpr bool kPackedProjection = false;
#endif
constexpr idx kPanelRows = 6;   // rows of x per panel (register block rows)
constexpr idx kStrip = 16;      // columns of w per strip (register block columns)
constexpr idx kPackedDepth = 256;  // features of x per pass over a block of y

PackedWeights pack_weights(const float* w, idx in, idx out) {
  PackedWeights pw;
  pw.in = in;
  pw.out = out;
  const idx strips = (out + kStrip - 1) / kStrip;
  pw.data.assign(static_cast<size_t>(strips * in * kStrip), 0.0f);
  for (idx s = 0; s < strips; ++s) {
    const idx j0 = s * kStrip, nj = std::min(kStrip, out - j0);
    for (idx f = 0; f < in; ++f)
      std::copy(w + f * out + j0, w + f * out + j0 + nj, pw.data.data() + (s * in + f) * kStrip);
  }
  return pw;
}

// Rows of x per task of the packed kernel (a function of the shapes only).
// Every block streams all of the packed weights once, so larger blocks read
// them less often; the block's panels and its y stay within the 1 MiB L2
// cache (512 rows instead of 256 at in = out = 256: q/k/v projections at
// 32/128/256/8/32 about 0.4 ms faster, timer builds; bench/README.md).
idx packed_row_block(idx in, idx out) { return in + out <= 512 ? 512 : 128; }

#ifdef MH_TILE_GEMM_AVX2
// One register block of R rows of y (R = 1 .. 6), columns [16 s, 16 s + n),
// row r written from row_at(r).
template <int R, class RowAt>
void packed_block(idx n, idx K, const float* a, const float* b, RowAt row_at, bool accumulate,
                  const float* init) {
  if (n == kStrip) {
    detail::block_r16_at<R, true>(n, K, a, 1, kPanelRows, b, kStrip, row_at, accumulate, init);
  } else {
    detail::block_r16_at<R, false>(n, K, a, 1, kPanelRows, b, kStrip, row_at, accumulate, init);
  }
}
#endif

// Floats of scratch packed_projection_block needs for up to nr rows: the
// panels of x, then y.
idx packed_scratch_floats(idx nr, idx in, idx out) {
  return (nr + kPanelRows - 1) / kPanelRows * kPanelRows * in + nr * out;
}

#ifdef __AVX__
// The full panels of G consecutive columns of x (src: column f's rows from
// r0, columns ldx apart) into a: each panel's 6 x G values are stored
// together (6 G consecutive floats at dst + q * step), and the G columns are
// read as G sequential streams. Non-finite values make *acc NaN when `check`.
template <int G>
inline void pack_column_group(const double* src, idx ldx, idx full_panels, idx step, float* dst,
                              bool check, __m256d* acc) {
  for (idx q = 0; q < full_panels; ++q) {
    float* d = dst + q * step;
    const double* s = src + q * kPanelRows;
    for (int c = 0; c < G; ++c) {
      const __m256d v4 = _mm256_loadu_pd(s + c * ldx);
      const __m128d v2 = _mm_loadu_pd(s + c * ldx + 4);
      if (check) {
        *acc = _mm256_add_pd(*acc, _mm256_sub_pd(v4, v4));
        *acc = _mm256_add_pd(*acc, _mm256_castpd128_pd256(_mm_sub_pd(v2, v2)));
      }
      _mm_storeu_ps(d + c * kPanelRows, _mm256_cvtpd_ps(v4));
      _mm_storel_pi(reinterpret_cast<__m64*>(d + c * kPanelRows + 4), _mm_cvtpd_ps(v2));
    }
  }
}
#endif

// Panels of x: a[(q * in + f) * 6 + i] = x(r0 + 6 q + i, f) as float, zero
// past nr. Returns false if `check` and a value was not finite.
//
// The columns of x are R's, often a power of two of bytes apart: they are
// read eight at a time (eight sequential streams, each cache line used whole
// before it leaves the L1 cache) with the panels filled 48 values at a time.
// Reading one column at a time and writing 6 values into every panel was
// about twice as slow from main memory (bench/README.md, kernel choices).
bool pack_panels(const double* x, idx ldx, idx r0, idx nr, idx in, float* a, bool check) {
  const idx panels = (nr + kPanelRows - 1) / kPanelRows;
  const idx step = in * kPanelRows;  // from one panel to the next
  idx full = 0;  // panels filled by the vector loop
  bool ok = true;
#ifdef __AVX__
  full = nr / kPanelRows;
  __m256d acc = _mm256_setzero_pd();
  idx f = 0;
  for (; f + 8 <= in; f += 8)
    pack_column_group<8>(x + f * ldx + r0, ldx, full, step, a + f * kPanelRows, check, &acc);
  for (; f < in; ++f)
    pack_column_group<1>(x + f * ldx + r0, ldx, full, step, a + f * kPanelRows, check, &acc);
  if (check) ok = _mm256_movemask_pd(_mm256_cmp_pd(acc, acc, _CMP_UNORD_Q)) == 0;
#endif
  for (idx f = 0; f < in; ++f) {  // the rest: the last, partial panel
    const double* src = x + f * ldx + r0;
    float* dst = a + f * kPanelRows;
    for (idx q = full; q < panels; ++q) {
      for (idx i = 0; i < kPanelRows; ++i) {
        const idx r = q * kPanelRows + i;
        const double v = r < nr ? src[r] : 0.0;
        if (check) ok = ok && v - v == 0;
        dst[q * step + i] = static_cast<float>(v);
      }
    }
  }
  return ok;
}

// Panels of rows x_row[r0 .. r0 + nr - 1] of the row-major float x (rows of
// `in` values): a[(q * in + f) * 6 + i] = x[x_row[r0 + 6 q + i], f], zero
// past nr.
void pack_panels_gather(const float* x, const idx* x_row, idx r0, idx nr, idx in, float* a) {
  const idx panels = (nr + kPanelRows - 1) / kPanelRows;
  for (idx q = 0; q < panels; ++q) {
    float* dst = a + q * in * kPanelRows;
    const float* src[kPanelRows];  // the panel's rows; null past nr (zeros)
    for (idx i = 0; i < kPanelRows; ++i) {
      const idx r = q * kPanelRows + i;
      src[i] = r < nr ? x + x_row[r0 + r] * in : nullptr;
    }
    idx f = 0;
#ifdef MH_TILE_GEMM_AVX2
    // 8 features at a time: the 6 rows' runs (and 2 zero rows) transposed in
    // registers, each feature's 6 values stored together
    for (; f + 8 <= in; f += 8) {
      __m256 v[8];
      for (idx i = 0; i < kPanelRows; ++i) v[i] = src[i] ? _mm256_loadu_ps(src[i] + f) : _mm256_setzero_ps();
      v[6] = v[7] = _mm256_setzero_ps();
      detail::transpose8(v);  // v[c]: feature f + c of rows 0 .. 5, then 2 zeros
      for (int c = 0; c < 8; ++c) {
        float* d = dst + (f + c) * kPanelRows;
        _mm_storeu_ps(d, _mm256_castps256_ps128(v[c]));
        _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(v[c], 1));
      }
    }
#endif
    for (; f < in; ++f)
      for (idx i = 0; i < kPanelRows; ++i) dst[f * kPanelRows + i] = src[i] ? src[i][f] : 0.0f;
  }
}

// y (nr, out) = (the nr rows packed in panels a) times w, plus b (may be
// null), y(i, j) written at strip_at(i, s) + j - 16 s for the strip s = j / 16
// holding column j (16 columns of a row are contiguous). Sums over the
// features in order, in chunks of kPackedDepth.
template <class StripAt>
void packed_multiply_to(const float* a, idx nr, const PackedWeights& w, const float* b,
                        StripAt strip_at) {
#ifdef MH_TILE_GEMM_AVX2
  const idx in = w.in, out = w.out, panels = (nr + kPanelRows - 1) / kPanelRows;
  const idx strips = (out + kStrip - 1) / kStrip;
  for (idx k0 = 0; k0 < in; k0 += kPackedDepth) {
    const idx kc = std::min(kPackedDepth, in - k0);
    for (idx s = 0; s < strips; ++s) {
      const idx n = std::min(kStrip, out - s * kStrip);
      const float* bs = w.data.data() + (s * in + k0) * kStrip;
      const float* init = k0 == 0 && b ? b + s * kStrip : nullptr;
      for (idx q = 0; q < panels; ++q) {
        const float* aq = a + (q * in + k0) * kPanelRows;
        const idx i0 = q * kPanelRows;
        auto row_at = [&strip_at, i0, s](int r) { return strip_at(i0 + r, s); };
        switch (std::min(kPanelRows, nr - i0)) {
          case 6: packed_block<6>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          case 5: packed_block<5>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          case 4: packed_block<4>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          case 3: packed_block<3>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          case 2: packed_block<2>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          default: packed_block<1>(n, kc, aq, bs, row_at, k0 > 0, init); break;
        }
      }
    }
  }
#else
  (void)a, (void)nr, (void)w, (void)b, (void)strip_at;
  throw std::logic_error("multihead core: the packed projection needs AVX2 + FMA");
#endif
}

// The same into the row-major y (nr, out).
void packed_multiply(const float* a, idx nr, const PackedWeights& w, const float* b, float* y) {
  const idx out = w.out;
  packed_multiply_to(a, nr, w, b, [y, out](idx i, idx s) { return y + i * out + s * kStrip; });
}

// y (nr, out) row-major = rows r0 .. r0 + nr - 1 of the column-major x times
// w, plus b (may be null), using `scratch` (packed_scratch_floats(nr, in,
// out) floats; y is its tail, returned). Returns false in *ok if `check` and
// a value of x was not finite.
float* packed_projection_block(const double* x, idx ldx, idx r0, idx nr, const PackedWeights& w,
                               const float* b, float* scratch, bool check, bool* ok) {
  const idx panels = (nr + kPanelRows - 1) / kPanelRows;
  float* a = scratch;
  float* y = scratch + panels * kPanelRows * w.in;
  *ok = pack_panels(x, ldx, r0, nr, w.in, a, check);
  packed_multiply(a, nr, w, b, y);
  return y;
}

// dst[col(j) * ldy + i] = y[i * out + j] as doubles (i < nr, j < out;
// col(j) = y_col[j], or j when y_col is null): a row-major float block
// written into the columns of an R matrix.
void store_columns(const float* y, idx nr, idx out, const idx* y_col, double* dst, idx ldy) {
  auto col = [&](idx j) { return dst + (y_col ? y_col[j] : j) * ldy; };
  idx i0 = 0;
#ifdef MH_TILE_GEMM_AVX2
  for (; i0 + 8 <= nr; i0 += 8) {
    idx j0 = 0;
    for (; j0 + 8 <= out; j0 += 8) {
      __m256 r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(y + (i0 + k) * out + j0);
      detail::transpose8(r);  // r[c]: column j0 + c, rows i0 .. i0 + 7
      for (int c = 0; c < 8; ++c) {
        double* d = col(j0 + c) + i0;
        _mm256_storeu_pd(d, _mm256_cvtps_pd(_mm256_castps256_ps128(r[c])));
        _mm256_storeu_pd(d + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(r[c], 1)));
      }
    }
    for (; j0 < out; ++j0)
      for (idx i = i0; i < i0 + 8; ++i) col(j0)[i] = static_cast<double>(y[i * out + j0]);
  }
#endif
  for (idx j = 0; j < out; ++j)
    for (idx i = i0; i < nr; ++i) col(j)[i] = static_cast<double>(y[i * out + j]);
}

// Block `blk` of a column-major product (see dense_forward_blocks_colmajor).
// Returns false if p.finite is set and the block held a non-finite value.
// `packed`: the product's packed weights when the packed kernel runs it,
// with the calling thread's scratch.
template <class T>
bool colmajor_block(const ColMajorProduct<T>& p, idx rb, long blk, const PackedWeights* packed,
                    float* scratch) {
  const idx r0 = blk * rb, nr = std::min(rb, p.rows - r0);
  if (packed) {
    bool ok = true;
    const float* b = reinterpret_cast<const float*>(p.b);
    if (p.direct_rows && p.direct_strip) {  // y straight into its place
      ok = pack_panels(p.x, p.ldx, r0, nr, p.in, scratch, p.finite != nullptr);
      std::vector<T*> rows(static_cast<size_t>(nr));
      p.direct_rows(r0, nr, rows.data());
      const idx* strip = p.direct_strip;
      packed_multiply_to(scratch, nr, *packed, b, [&rows, strip](idx i, idx s) {
        return reinterpret_cast<float*>(rows[static_cast<size_t>(i)]) + strip[s];
      });
      return ok;
    }
    const float* y = packed_projection_block(p.x, p.ldx, r0, nr, *packed, b, scratch,
                                             p.finite != nullptr, &ok);
    p.store(r0, nr, reinterpret_cast<const T*>(y));
    return ok;
  }
  Eigen::Map<const RowMat<T>> W(p.w, p.in, p.out);
  // The block of x, converted: column-major (nr, in), each column a
  // contiguous run of the source.
  Buffer<T> xbuf(static_cast<size_t>(nr * p.in));
  bool ok = true;
  for (idx f = 0; f < p.in; ++f)
    ok &= convert_run(p.x + f * p.ldx + r0, nr, xbuf.data() + f * nr, p.finite != nullptr);
  Eigen::Map<const ColMat<T>> X(xbuf.data(), nr, p.in);
  Buffer<T> ybuf(static_cast<size_t>(nr * p.out));
  Eigen::Map<RowMat<T>> Y(ybuf.data(), nr, p.out);
  product_plus_bias(X, W, p.b, Y);
  p.store(r0, nr, ybuf.data());
  return ok;
}

}  // namespace

template <class T>
void dense_forward_blocks_colmajor(const std::vector<ColMajorProduct<T>>& products, int threads) {
  // Task list: (product, block), products in order.
  std::vector<std::pair<size_t, long>> tasks;
  std::vector<idx> rbs;
  std::vector<PackedWeights> packed;  // one per product with the packed kernel
  const bool use_packed = kPackedProjection && std::is_same<T, float>::value;
  double macs = 0;
  for (size_t k = 0; k < products.size(); ++k) {
    const ColMajorProduct<T>& p = products[k];
    if (use_packed) {
      packed.push_back(pack_weights(reinterpret_cast<const float*>(p.w), p.in, p.out));
      rbs.push_back(packed_row_block(p.in, p.out));
    } else {
      rbs.push_back(row_block(p.rows, p.in, p.out));
    }
    for (long blk = 0; blk < n_blocks(p.rows, rbs.back()); ++blk) tasks.emplace_back(k, blk);
    macs += static_cast<double>(p.rows) * p.in * p.out;
  }
  std::vector<char> task_ok(tasks.size(), 1);  // one flag per task: no shared writes
  const int used = threads_for_macs(macs, threads);
  // The packed kernel's scratch: one area per thread, allocated once per call
  // (per block, the heap would hand out freshly faulted pages again and again).
  std::vector<Buffer<float>> scratch(use_packed ? static_cast<size_t>(used) : 0);
  if (use_packed) {
    idx floats = 0;
    for (size_t k = 0; k < products.size(); ++k)
      floats = std::max(floats, packed_scratch_floats(std::min(rbs[k], products[k].rows),
                                                      products[k].in, products[k].out));
    for (Buffer<float>& b : scratch) b.resize(static_cast<size_t>(floats));
  }
  parallel_for(static_cast<long>(tasks.size()), used, [&](long i) {
    const size_t k = tasks[i].first;
    task_ok[static_cast<size_t>(i)] =
        colmajor_block(products[k], rbs[k], tasks[i].second, use_packed ? &packed[k] : nullptr,
                       use_packed ? scratch[static_cast<size_t>(thread_index(used))].data() : nullptr);
  });
  for (const ColMajorProduct<T>& p : products)
    if (p.finite) *p.finite = true;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const ColMajorProduct<T>& p = products[tasks[i].first];
    if (p.finite && !task_ok[i]) *p.finite = false;
  }
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
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  if (kPackedProjection && std::is_same<T, float>::value) {
    // The packed kernel: one packing of w, per-thread scratch (panels, y).
    const PackedWeights pw = pack_weights(reinterpret_cast<const float*>(w), in, out);
    const idx rb = packed_row_block(in, out);
    std::vector<Buffer<float>> scratch(static_cast<size_t>(used));
    const idx floats = packed_scratch_floats(std::min(rb, rows), in, out);  // a block at most
    for (Buffer<float>& s : scratch) s.resize(static_cast<size_t>(floats));
    parallel_for(n_blocks(rows, rb), used, [&](long blk) {
      const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
      float* a = scratch[static_cast<size_t>(thread_index(used))].data();
      float* yb = a + (nr + kPanelRows - 1) / kPanelRows * kPanelRows * in;
      pack_panels_gather(reinterpret_cast<const float*>(x), x_row, r0, nr, in, a);
      packed_multiply(a, nr, pw, reinterpret_cast<const float*>(b), yb);
      store_columns(yb, nr, out, y_col, y + r0, ldy);
    });
    return;
  }
  Eigen::Map<const RowMat<T>> W(w, in, out);
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
    product_plus_bias(X, W, b, Y);
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
  const idx rb = backward_row_block(rows, in, out);
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

template <class T>
void dense_backward_colmajor_dy(const double* dy, idx ldy, const idx* y_col, const idx* x_row,
                                idx rows, const T* x, idx in, const T* w, idx out, T* dx, T* dw,
                                T* db, int threads, bool* dy_finite) {
  Eigen::Map<const RowMat<T>> W(w, in, out);
  if (dy_finite) *dy_finite = true;
  const idx rb = backward_row_block(rows, in, out);
  const long nb = n_blocks(rows, rb);
  // Groups of consecutive blocks, each with its own dw and db partial sums;
  // their number depends on the shapes only.
  const long groups = std::min<long>(nb, kWeightGroups);
  if (groups == 0) {
    std::fill(dw, dw + in * out, T(0));
    if (db) std::fill(db, db + out, T(0));
    return;
  }
  Buffer<T> part(static_cast<size_t>(groups * (in * out + out)));
  std::vector<char> group_ok(static_cast<size_t>(groups), 1);
  const int used = threads_for_macs(2.0 * rows * in * out, threads);
  parallel_for(groups, used, [&](long grp) {
    Eigen::Map<RowMat<T>> dW(part.data() + grp * (in * out + out), in, out);
    Eigen::Map<RowVec<T>> dB(part.data() + grp * (in * out + out) + in * out, out);
    Buffer<T> ybuf(static_cast<size_t>(rb * out)), xbuf(static_cast<size_t>(rb * in)),
        dxbuf(static_cast<size_t>(rb * in));
    const long b0 = grp * nb / groups, b1 = (grp + 1) * nb / groups;
    for (long blk = b0; blk < b1; ++blk) {
      const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
      bool ok = true;
      for (idx j = 0; j < out; ++j)
        ok &= convert_run(dy + (y_col ? y_col[j] : j) * ldy + r0, nr, ybuf.data() + j * nr,
                          dy_finite != nullptr);
      if (!ok) group_ok[static_cast<size_t>(grp)] = 0;
      Eigen::Map<const ColMat<T>> dY(ybuf.data(), nr, out);
      for (idx i = 0; i < nr; ++i) {
        const T* src = x + x_row[r0 + i] * in;
        std::copy(src, src + in, xbuf.data() + i * in);
      }
      Eigen::Map<const RowMat<T>> X(xbuf.data(), nr, in);
      add_weight_grads(X, dY, blk == b0, dW, dB);
      Eigen::Map<RowMat<T>> dX(dxbuf.data(), nr, in);
      dX.noalias() = dY * W.transpose();
      for (idx i = 0; i < nr; ++i)
        std::copy(dxbuf.data() + i * in, dxbuf.data() + (i + 1) * in, dx + x_row[r0 + i] * in);
    }
  });
  if (dy_finite) *dy_finite = std::find(group_ok.begin(), group_ok.end(), 0) == group_ok.end();
  // Sum the groups in order, each element by one task.
  const idx n = in * out + out;
  const idx chunk = 4096;
  parallel_for(n_blocks(n, chunk), threads_for_elements(double(groups) * n, threads), [&](long c) {
    const idx e0 = c * chunk, e1 = std::min(n, e0 + chunk);
    for (idx e = e0; e < e1; ++e) {
      T s = part[static_cast<size_t>(e)];
      for (long grp = 1; grp < groups; ++grp) s += part[static_cast<size_t>(grp * n + e)];
      if (e < in * out) {
        dw[e] = s;
      } else if (db) {
        db[e - in * out] = s;
      }
    }
  });
}

template <class T>
void dense_backward_weights_colmajor(const double* x, idx ldx, const idx* x_row, idx rows,
                                     idx in, const T* dy, idx out, T* dw, T* db, int threads) {
  Eigen::Map<const RowMat<T>> dY(dy, rows, out);
  Eigen::Map<RowMat<T>> dW(dw, in, out);
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  parallel_for(n_blocks(in, kFeatureBlock), used, [&](long blk) {
    const idx f0 = blk * kFeatureBlock, nf = std::min(kFeatureBlock, in - f0);
    // Columns f0 .. f0 + nf - 1 of x, rows in dy's order: (rows, nf) column-major.
    Buffer<T> xbuf(static_cast<size_t>(rows * nf));
    for (idx j = 0; j < nf; ++j) {
      const double* src = x + (f0 + j) * ldx;
      T* dst = xbuf.data() + j * rows;
      for (idx r = 0; r < rows; ++r) dst[x_row[r]] = static_cast<T>(src[r]);
    }
    Eigen::Map<const ColMat<T>> X(xbuf.data(), rows, nf);
    dW.middleRows(f0, nf).noalias() = X.transpose() * dY;
  });
  if (db) {
    Eigen::Map<RowVec<T>> dB(db, out);
    dB.setZero();
    for (idx r = 0; r < rows; ++r) dB += dY.row(r);
  }
}

template <class T>
void dense_backward_input_colmajor(const std::vector<BackwardInputTerm<T>>& terms,
                                   const idx* dy_row, idx rows, idx in, double* dx, idx ldx,
                                   int threads) {
  if (terms.empty()) return;
  idx out_max = 0;
  double macs = 0;
  for (const BackwardInputTerm<T>& t : terms) {
    out_max = std::max(out_max, t.out);
    macs += static_cast<double>(rows) * in * t.out;
  }
  const idx rb = backward_row_block(rows, in, terms[0].out);
  parallel_for(n_blocks(rows, rb), threads_for_macs(macs, threads), [&](long blk) {
    const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
    Buffer<T> ybuf(static_cast<size_t>(nr * out_max)), xbuf(static_cast<size_t>(nr * in));
    Eigen::Map<ColMat<T>> dX(xbuf.data(), nr, in);  // each column a run of the destination
    for (size_t k = 0; k < terms.size(); ++k) {
      const BackwardInputTerm<T>& t = terms[k];
      for (idx i = 0; i < nr; ++i) {
        const T* src = t.dy + dy_row[r0 + i] * t.out;
        std::copy(src, src + t.out, ybuf.data() + i * t.out);
      }
      Eigen::Map<const RowMat<T>> dY(ybuf.data(), nr, t.out);
      Eigen::Map<const RowMat<T>> W(t.w, in, t.out);
      if (k == 0) {
        dX.noalias() = dY * W.transpose();
      } else {
        dX.noalias() += dY * W.transpose();
      }
    }
    for (idx f = 0; f < in; ++f) convert_run(xbuf.data() + f * nr, nr, dx + f * ldx + r0);
  });
}

namespace {

// Partial weight gradients of dense_backward_colmajor_x: at most this many
// elements per problem (all groups and terms), so wide kernels do not
// multiply their memory by the number of groups.
constexpr double kMaxPartialElements = double(1 << 23);

// Row-block groups of one problem of dense_backward_colmajor_x (a function of
// the shapes only), 0 when it must use the unfused functions.
template <class T>
long backward_groups(const ColMajorBackward<T>& p) {
  const idx rb = backward_row_block(p.rows, p.in, p.terms.empty() ? 1 : p.terms[0].out);
  const long nb = n_blocks(p.rows, rb);
  double per_group = 0;
  for (const BackwardTerm<T>& t : p.terms) per_group += double(p.in) * t.out + t.out;
  const long fit = static_cast<long>(kMaxPartialElements / std::max(1.0, per_group));
  const long groups = std::min<long>(std::min<long>(nb, kWeightGroups), fit);
  return groups >= 2 || nb <= 1 ? std::max<long>(groups, nb > 0 ? 1 : 0) : 0;
}

}  // namespace

template <class T>
void dense_backward_colmajor_x(const std::vector<ColMajorBackward<T>>& problems, int threads,
                               const std::function<void()>& alongside) {
  auto side = [&] {
    if (alongside) alongside();
  };
  bool side_done = false;
  auto side_now = [&] {
    if (!side_done) side();
    side_done = true;
  };
  struct Task {
    size_t p;
    long grp;
  };
  std::vector<Task> tasks;
  std::vector<long> groups(problems.size());
  std::vector<std::vector<size_t>> offset(problems.size());  // partials of (term, group)
  size_t partial_size = 0;
  double macs = 0;
  for (size_t k = 0; k < problems.size(); ++k) {
    const ColMajorBackward<T>& p = problems[k];
    if (p.terms.empty()) continue;
    groups[k] = backward_groups(p);
    if (groups[k] == 0) {  // too wide for partial sums: feature bands instead
      side_now();
      for (const BackwardTerm<T>& t : p.terms)
        dense_backward_weights_colmajor<T>(p.x, p.ldx, p.x_row, p.rows, p.in, t.dy, t.out, t.dw,
                                           t.db, threads);
      std::vector<BackwardInputTerm<T>> in_terms;
      for (const BackwardTerm<T>& t : p.terms) in_terms.push_back({t.dy, t.out, t.w});
      dense_backward_input_colmajor<T>(in_terms, p.x_row, p.rows, p.in, p.dx, p.lddx, threads);
      continue;
    }
    for (size_t t = 0; t < p.terms.size(); ++t) {
      for (long g = 0; g < groups[k]; ++g) {
        offset[k].push_back(partial_size);
        partial_size += static_cast<size_t>(p.in * p.terms[t].out + p.terms[t].out);
      }
      macs += 2.0 * p.rows * p.in * p.terms[t].out;
    }
    for (long g = 0; g < groups[k]; ++g) tasks.push_back({k, g});
  }
  if (tasks.empty()) {
    side_now();
    return;
  }
  Buffer<T> part(partial_size);
  auto body = [&](long i) {
    const ColMajorBackward<T>& p = problems[tasks[i].p];
    const long grp = tasks[i].grp, ng = groups[tasks[i].p];
    idx out_max = 0;
    for (const BackwardTerm<T>& t : p.terms) out_max = std::max(out_max, t.out);
    const idx rb = backward_row_block(p.rows, p.in, p.terms[0].out);
    const long nb = n_blocks(p.rows, rb);
    const long b0 = grp * nb / ng, b1 = (grp + 1) * nb / ng;
    Buffer<T> xbuf(static_cast<size_t>(rb * p.in)), ybuf(static_cast<size_t>(rb * out_max)),
        dxbuf(static_cast<size_t>(rb * p.in));
    for (long blk = b0; blk < b1; ++blk) {
      const idx r0 = blk * rb, nr = std::min(rb, p.rows - r0);
      // x's block, column-major (nr, in): each column a contiguous run of x.
      for (idx f = 0; f < p.in; ++f) convert_run(p.x + f * p.ldx + r0, nr, xbuf.data() + f * nr);
      Eigen::Map<const ColMat<T>> X(xbuf.data(), nr, p.in);
      Eigen::Map<ColMat<T>> dX(dxbuf.data(), nr, p.in);  // each column a run of dx
      for (size_t k = 0; k < p.terms.size(); ++k) {
        const BackwardTerm<T>& t = p.terms[k];
        for (idx i = 0; i < nr; ++i) {
          const T* src = t.dy + p.x_row[r0 + i] * t.out;
          std::copy(src, src + t.out, ybuf.data() + i * t.out);
        }
        Eigen::Map<const RowMat<T>> dY(ybuf.data(), nr, t.out);
        T* pw = part.data() + offset[tasks[i].p][k * static_cast<size_t>(ng) + grp];
        Eigen::Map<RowMat<T>> dW(pw, p.in, t.out);
        Eigen::Map<RowVec<T>> dB(pw + p.in * t.out, t.out);
        add_weight_grads(X, dY, blk == b0, dW, dB);
        Eigen::Map<const RowMat<T>> W(t.w, p.in, t.out);
        if (k == 0) {
          dX.noalias() = dY * W.transpose();
        } else {
          dX.noalias() += dY * W.transpose();
        }
      }
      for (idx f = 0; f < p.in; ++f) convert_run(dxbuf.data() + f * nr, nr, p.dx + f * p.lddx + r0);
    }
  };
  const long n_tasks = static_cast<long>(tasks.size());
  const int used = threads_for_macs(macs, threads);
  if (side_done) {
    parallel_for(n_tasks, used, body);
  } else {
    parallel_for_alongside(n_tasks, used, side, body);
  }
  // Sum each term's groups in order, each element by one task.
  struct Sum {
    size_t p, t;
  };
  std::vector<Sum> sums;
  for (size_t k = 0; k < problems.size(); ++k)
    if (groups[k] > 0)
      for (size_t t = 0; t < problems[k].terms.size(); ++t) sums.push_back({k, t});
  const idx chunk = 4096;
  std::vector<std::pair<size_t, long>> jobs;  // (sum, chunk)
  for (size_t j = 0; j < sums.size(); ++j) {
    const BackwardTerm<T>& t = problems[sums[j].p].terms[sums[j].t];
    const idx n = problems[sums[j].p].in * t.out + t.out;
    for (long c = 0; c < n_blocks(n, chunk); ++c) jobs.emplace_back(j, c);
  }
  parallel_for(static_cast<long>(jobs.size()),
               threads_for_elements(static_cast<double>(partial_size), threads), [&](long q) {
    const Sum& sm = sums[jobs[q].first];
    const ColMajorBackward<T>& p = problems[sm.p];
    const BackwardTerm<T>& t = p.terms[sm.t];
    const long ng = groups[sm.p];
    const idx n = p.in * t.out + t.out, nw = p.in * t.out;
    const idx e0 = jobs[q].second * chunk, e1 = std::min(n, e0 + chunk);
    const size_t base = sm.t * static_cast<size_t>(ng);
    for (idx e = e0; e < e1; ++e) {
      T s = part[offset[sm.p][base] + static_cast<size_t>(e)];
      for (long g = 1; g < ng; ++g) s += part[offset[sm.p][base + g] + static_cast<size_t>(e)];
      if (e < nw) {
        t.dw[e] = s;
      } else if (t.db) {
        t.db[e - nw] = s;
      }
    }
  });
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
  template void dense_backward_weights<T>(const T*, const T*, idx, idx, idx, T*, T*, int);  \
  template void dense_backward_colmajor_dy<T>(const double*, idx, const idx*, const idx*, idx,  \
                                              const T*, idx, const T*, idx, T*, T*, T*, int,    \
                                              bool*);                                           \
  template void dense_backward_weights_colmajor<T>(const double*, idx, const idx*, idx, idx,    \
                                                   const T*, idx, T*, T*, int);                 \
  template void dense_backward_input_colmajor<T>(const std::vector<BackwardInputTerm<T>>&,     \
                                                 const idx*, idx, idx, double*, idx, int);      \
  template void dense_backward_colmajor_x<T>(const std::vector<ColMajorBackward<T>>&, int,   \
                                             const std::function<void()>&);

MH_INSTANTIATE_DENSE(float)
MH_INSTANTIATE_DENSE(double)

}  // namespace mh
