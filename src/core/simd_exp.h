// exp() of 8 floats at once for the softmax of the flash kernel, whose
// arguments are never positive (logits minus their row maximum, or minus
// the row log-sum-exp). Included by simd_avx2.cpp alone, inside its AVX2 +
// FMA target region (internal linkage: no other unit may see it).
//
// The same range reduction and polynomial, evaluated in the same order, as
// Eigen 3.4's pexp (Cephes expf: exp(x) = 2^m exp(r), m = floor(x / ln 2 +
// 1/2), r = x - m ln 2 in two steps, exp(r) by a degree-5 polynomial); what
// is left out is the general exponent scaling (pldexp, about a third of the
// work): for -87.3 <= x <= 88, 2^m is a normal float built from its bits.
// Arguments below -87.3 (including -Inf) are clamped there: the result is
// then about 1.2e-38 instead of something smaller or 0, which no softmax
// sum can notice (callers zero masked keys themselves).
#pragma once

#ifndef MH_AVX2_KERNELS
#error "simd_exp.h belongs to simd_avx2.cpp only"
#endif

namespace mh {
namespace avx2 {
namespace {

inline __m256 exp_nonpositive(__m256 x) {
  // (the upper clamp only keeps 2^m a float for any input: a softmax
  // argument can exceed 0 by a rounding error, which is computed exactly;
  // x as the second operand: a NaN passes through to the result)
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x));
  // m = floor(x log2(e) + 1/2) in [-126, 127]
  const __m256 m = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f),
                                                   _mm256_set1_ps(0.5f)));
  // r = x - m ln(2), ln(2) in two parts
  __m256 r = _mm256_fmadd_ps(m, _mm256_set1_ps(-0.693359375f), x);
  r = _mm256_fmadd_ps(m, _mm256_set1_ps(2.12194440e-4f), r);
  const __m256 r2 = _mm256_mul_ps(r, r), r3 = _mm256_mul_ps(r2, r);
  // the polynomial, in Eigen's order of evaluation
  __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
  __m256 y1 = _mm256_fmadd_ps(_mm256_set1_ps(4.1665795894e-2f), r, _mm256_set1_ps(1.6666665459e-1f));
  const __m256 y2 = _mm256_add_ps(r, _mm256_set1_ps(1.0f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y1 = _mm256_fmadd_ps(y1, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, r3, y1);
  y = _mm256_fmadd_ps(y, r2, y2);
  // 2^m from its exponent bits (m + 127 in 1 .. 254)
  const __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(m), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

}  // namespace
}  // namespace avx2
}  // namespace mh
