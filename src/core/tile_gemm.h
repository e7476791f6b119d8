// Small matrix products on attention tiles, without packing:
//
//   C (M, N)  =  or  +=  A (M, K) * B (K, N)
//
// A is read through arbitrary strides, A(i, p) = a[i * a_rs + p * a_cs], so
// A or A^T of a row-major tile can be passed without copying; B and C are
// row-major with unit column stride (B(p, j) = b[p * ldb + j]). Eigen's GEMM
// packs both operands on every call, which on the tile sizes of the flash
// kernel costs about a fifth of the time; this kernel broadcasts elements of
// A against vectors of B held in registers instead (6 rows x 16 columns per
// block; float, when cpu_dispatch.h chose AVX2 + FMA: simd_kernels.h). Other
// types and the portable path use Eigen.
//
// The summation order over p is fixed, so results do not depend on threads.
#pragma once

#include <Eigen/Core>

#include "cpu_dispatch.h"
#include "layout.h"
#include "simd_kernels.h"

namespace mh {

namespace detail {

template <class T>
void tile_gemm_eigen(idx M, idx N, idx K, const T* a, idx a_rs, idx a_cs, const T* b, idx ldb,
                     T* c, idx ldc, bool accumulate) {
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Strides = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  Eigen::Map<const RowMat, 0, Strides> A(a, M, K, Strides(a_rs, a_cs));
  Eigen::Map<const RowMat, 0, Eigen::OuterStride<>> B(b, K, N, Eigen::OuterStride<>(ldb));
  Eigen::Map<RowMat, 0, Eigen::OuterStride<>> C(c, M, N, Eigen::OuterStride<>(ldc));
  if (accumulate) {
    C.noalias() += A * B;
  } else {
    C.noalias() = A * B;
  }
}


}  // namespace detail

template <class T>
inline void tile_gemm(idx M, idx N, idx K, const T* a, idx a_rs, idx a_cs, const T* b, idx ldb,
                      T* c, idx ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  detail::tile_gemm_eigen(M, N, K, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
}

template <>
inline void tile_gemm<float>(idx M, idx N, idx K, const float* a, idx a_rs, idx a_cs,
                             const float* b, idx ldb, float* c, idx ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (use_avx2()) {
    avx2::tile_gemm_f32(M, N, K, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
  } else {
    detail::tile_gemm_eigen(M, N, K, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
  }
}

}  // namespace mh
