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
// block, AVX2 + FMA, float). Other types and builds use Eigen.
//
// The summation order over p is fixed, so results do not depend on threads.
#pragma once

#include <Eigen/Core>

#include "layout.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MH_TILE_GEMM_AVX2 1
#endif

// Fully unrolled loops over the register block (the accumulators must stay
// in registers).
#if defined(__clang__)
#define MH_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define MH_UNROLL _Pragma("GCC unroll 8")
#else
#define MH_UNROLL
#endif

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

#ifdef MH_TILE_GEMM_AVX2

// In-register transpose of an 8 x 8 block of floats (r[i] = row i in, column
// i out).
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Lane mask for the first n (0..8) of 8 floats.
inline __m256i lane_mask(idx n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lanes);
}

// One block of R rows (R <= 6) and up to 16 columns (n of them), row r of
// C starting at row_at(r). Without `accumulate`, the block starts from
// `init` (16 values, the same for every row: a bias) when it is set, else
// from zero.
template <int R, bool Full, class RowAt>
inline void block_r16_at(idx n, idx K, const float* a, idx a_rs, idx a_cs, const float* b,
                         idx ldb, RowAt row_at, bool accumulate, const float* init) {
  __m256 acc0[R], acc1[R];
  const __m256i m0 = lane_mask(n < 8 ? n : 8), m1 = lane_mask(n > 8 ? n - 8 : 0);
  __m256 init0 = _mm256_setzero_ps(), init1 = _mm256_setzero_ps();
  if (init && !accumulate) {
    init0 = Full ? _mm256_loadu_ps(init) : _mm256_maskload_ps(init, m0);
    init1 = Full ? _mm256_loadu_ps(init + 8) : _mm256_maskload_ps(init + 8, m1);
  }
MH_UNROLL
  for (int r = 0; r < R; ++r) {
    if (accumulate) {
      if (Full) {
        acc0[r] = _mm256_loadu_ps(row_at(r));
        acc1[r] = _mm256_loadu_ps(row_at(r) + 8);
      } else {
        acc0[r] = _mm256_maskload_ps(row_at(r), m0);
        acc1[r] = _mm256_maskload_ps(row_at(r) + 8, m1);
      }
    } else {
      acc0[r] = init0;
      acc1[r] = init1;
    }
  }
  for (idx p = 0; p < K; ++p) {
    const float* bp = b + p * ldb;
    __m256 b0, b1;
    if (Full) {
      b0 = _mm256_loadu_ps(bp);
      b1 = _mm256_loadu_ps(bp + 8);
    } else {
      b0 = _mm256_maskload_ps(bp, m0);
      b1 = _mm256_maskload_ps(bp + 8, m1);
    }
    const float* ap = a + p * a_cs;
  MH_UNROLL
  for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(ap + r * a_rs);
      acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
    }
  }
MH_UNROLL
  for (int r = 0; r < R; ++r) {
    if (Full) {
      _mm256_storeu_ps(row_at(r), acc0[r]);
      _mm256_storeu_ps(row_at(r) + 8, acc1[r]);
    } else {
      _mm256_maskstore_ps(row_at(r), m0, acc0[r]);
      _mm256_maskstore_ps(row_at(r) + 8, m1, acc1[r]);
    }
  }
}

// The block with C's rows ldc apart from c.
template <int R, bool Full>
inline void block_r16(idx n, idx K, const float* a, idx a_rs, idx a_cs, const float* b, idx ldb,
                      float* c, idx ldc, bool accumulate, const float* init = nullptr) {
  block_r16_at<R, Full>(n, K, a, a_rs, a_cs, b, ldb, [c, ldc](int r) { return c + r * ldc; },
                        accumulate, init);
}

template <int R>
inline void rows_r(idx N, idx K, const float* a, idx a_rs, idx a_cs, const float* b, idx ldb,
                   float* c, idx ldc, bool accumulate) {
  idx j = 0;
  for (; j + 16 <= N; j += 16) block_r16<R, true>(16, K, a, a_rs, a_cs, b + j, ldb, c + j, ldc, accumulate);
  if (j < N) block_r16<R, false>(N - j, K, a, a_rs, a_cs, b + j, ldb, c + j, ldc, accumulate);
}

inline void tile_gemm_avx2(idx M, idx N, idx K, const float* a, idx a_rs, idx a_cs,
                           const float* b, idx ldb, float* c, idx ldc, bool accumulate) {
  idx i = 0;
  for (; i + 6 <= M; i += 6) rows_r<6>(N, K, a + i * a_rs, a_rs, a_cs, b, ldb, c + i * ldc, ldc, accumulate);
  const float* ai = a + i * a_rs;
  float* ci = c + i * ldc;
  switch (M - i) {
    case 5: rows_r<5>(N, K, ai, a_rs, a_cs, b, ldb, ci, ldc, accumulate); break;
    case 4: rows_r<4>(N, K, ai, a_rs, a_cs, b, ldb, ci, ldc, accumulate); break;
    case 3: rows_r<3>(N, K, ai, a_rs, a_cs, b, ldb, ci, ldc, accumulate); break;
    case 2: rows_r<2>(N, K, ai, a_rs, a_cs, b, ldb, ci, ldc, accumulate); break;
    case 1: rows_r<1>(N, K, ai, a_rs, a_cs, b, ldb, ci, ldc, accumulate); break;
    default: break;
  }
}

#endif  // MH_TILE_GEMM_AVX2

}  // namespace detail

template <class T>
inline void tile_gemm(idx M, idx N, idx K, const T* a, idx a_rs, idx a_cs, const T* b, idx ldb,
                      T* c, idx ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  detail::tile_gemm_eigen(M, N, K, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
}

#ifdef MH_TILE_GEMM_AVX2
template <>
inline void tile_gemm<float>(idx M, idx N, idx K, const float* a, idx a_rs, idx a_cs,
                             const float* b, idx ldb, float* c, idx ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  detail::tile_gemm_avx2(M, N, K, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
}
#endif

}  // namespace mh
