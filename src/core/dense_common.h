// What the dense kernels (dense.cpp, packed_gemm.cpp, dense_colmajor.cpp)
// share: Eigen matrix aliases, the row-block sizes of their parallel loops,
// double <-> float conversion of runs (optionally checking finiteness on the
// way) and the Eigen product steps. Internal to the core.
//
// Float products and conversions take the AVX2 + FMA kernels of
// simd_kernels.h when cpu_dispatch.h chose them (avx2_float<T>()), Eigen's
// GEMM and plain loops otherwise.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <type_traits>

#include "cpu_dispatch.h"
#include "layout.h"
#include "packed_gemm.h"
#include "simd_kernels.h"

namespace mh {
namespace dense_detail {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class T>
using RowVec = Eigen::Matrix<T, 1, Eigen::Dynamic>;

// Rows per parallel task: a function of the shapes only, so the split never
// depends on the number of threads (the sizes are measured choices:
// bench/README.md, "Row blocks of the projections").
inline idx row_block(idx rows, idx in, idx out) {
  if (in * out <= 256 * 512 && rows >= 4 * 1024) return 1024;
  return (in * out <= 256 * 512 && rows >= 4 * 512) ? 512 : 256;
}
// The backward kernels keep blocks of at most 512 rows: their tasks are
// longer (two products per block), and finer tasks let a thread that starts
// late (mapping in the fresh input gradients) share the work evenly.
inline idx backward_row_block(idx rows, idx in, idx out) {
  return std::min<idx>(512, row_block(rows, in, out));
}
// Kernel rows (input features) per task in the weight gradient.
constexpr idx kFeatureBlock = 64;
// At most this many partial weight gradients in dense_backward_colmajor_dy.
constexpr long kWeightGroups = 8;

inline long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

// True when T's products run on the AVX2 + FMA kernels (float on that path).
template <class T>
inline bool avx2_float() {
  return std::is_same<T, float>::value && use_avx2();
}

// dst[i] = static_cast<D>(src[i]) for i < n (the same rounding either way;
// -O2 does not vectorise these loops by itself).
template <class S, class D>
void convert_run(const S* src, idx n, D* dst) {
  for (idx i = 0; i < n; ++i) dst[i] = static_cast<D>(src[i]);
}
template <>
inline void convert_run<double, double>(const double* src, idx n, double* dst) {
  std::copy(src, src + n, dst);
}
template <>
inline void convert_run<double, float>(const double* src, idx n, float* dst) {
  if (use_avx2()) {
    avx2::convert_f64_f32(src, n, dst);
  } else {
    for (idx i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
  }
}
template <>
inline void convert_run<float, double>(const float* src, idx n, double* dst) {
  if (use_avx2()) {
    avx2::convert_f32_f64(src, n, dst);
  } else {
    for (idx i = 0; i < n; ++i) dst[i] = static_cast<double>(src[i]);
  }
}

// convert_run that also returns whether every converted value is finite:
// y - y is 0 for a finite y and NaN for NA, NaN and +-Inf, so a sum of those
// differences is 0 exactly when all are finite. The converted values are
// tested, so a finite double beyond float's range (which converts to +-Inf)
// counts as not finite in a float conversion.
template <class D>
bool convert_run_finite(const double* src, idx n, D* dst) {
  double acc = 0;
  for (idx i = 0; i < n; ++i) {
    const D y = static_cast<D>(src[i]);
    acc += static_cast<double>(y - y);
    dst[i] = y;
  }
  return acc == 0;
}
template <>
inline bool convert_run_finite<float>(const double* src, idx n, float* dst) {
  if (use_avx2()) return avx2::convert_f64_f32_finite(src, n, dst);
  bool ok = true;
  for (idx i = 0; i < n; ++i) {
    const float y = static_cast<float>(src[i]);
    ok = ok && y - y == 0;
    dst[i] = y;
  }
  return ok;
}

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

}  // namespace dense_detail
}  // namespace mh
