// The reference dense product: see dense.h. Row blocks of fixed size are the
// unit of parallel work, so results do not depend on the thread count.
#include "dense.h"

#include <Eigen/Dense>
#include <algorithm>

#include "dense_common.h"
#include "parallel.h"

namespace mh {

using namespace dense_detail;

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
    if (avx2_float<T>()) {
      gemm(nr, out, in, x + r0 * in, in, 1, w, out, 1, y + r0 * out, out, false);
    } else {
      Y.noalias() = X * W;
    }
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
    if (avx2_float<T>()) {
      gemm(nr, out, in, x + r0 * in, in, 1, w, out, 1, ybuf.data(), out, false);
    } else {
      Y.noalias() = X * W;
    }
    if (b) Y.rowwise() += Eigen::Map<const RowVec<T>>(b, out);
    store(r0, nr, ybuf.data());
  });
}

template <class T>
void dense_backward_input(const T* dy, idx rows, idx out, const T* w, idx in, T* dx,
                          bool accumulate, int threads) {
  if (!dx) return;
  Eigen::Map<const RowMat<T>> W(w, in, out);
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  const idx rb = backward_row_block(rows, in, out);
  parallel_for(n_blocks(rows, rb), used, [&](long blk) {
    const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
    Eigen::Map<const RowMat<T>> dY(dy + r0 * out, nr, out);
    Eigen::Map<RowMat<T>> dX(dx + r0 * in, nr, in);
    if (avx2_float<T>()) {  // dX (+)= dY W^T
      gemm(nr, in, out, dy + r0 * out, out, 1, w, 1, out, dx + r0 * in, in, accumulate);
    } else if (accumulate) {
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
    if (avx2_float<T>()) {
      gemm(nf, out, rows, x + f0, 1, in, dy, out, 1, dw + f0 * out, out, false);
    } else {
      dW.middleRows(f0, nf).noalias() = X.middleCols(f0, nf).transpose() * dY;
    }
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
  template void dense_backward_input<T>(const T*, idx, idx, const T*, idx, T*, bool, int);   \
  template void dense_backward_weights<T>(const T*, const T*, idx, idx, idx, T*, T*, int);

MH_INSTANTIATE_DENSE(float)
MH_INSTANTIATE_DENSE(double)

}  // namespace mh
