// The AVX2 kernels' exp (simd_exp.h, reached through exp_from_lse_f32 with
// scale 1 and L = 0), when the dispatch runs them: within 2 ulp of std::exp
// over the softmax range, the clamped ends, and NaN passing through. On the
// portable path, the dispatch must have had a reason not to run them.
#include <cmath>
#include <limits>

#include "cpu_dispatch.h"
#include "simd_kernels.h"
#include "test_util.h"

namespace {

float exp_kernel(float x) {
  float v[9];
  for (float& e : v) e = x;  // 8 lanes and the masked tail
  mh::avx2::exp_from_lse_f32(v, 9, 1.0f, 0.0f);
  EXPECT_TRUE(std::memcmp(&v[0], &v[8], sizeof(float)) == 0 || (std::isnan(v[0]) && std::isnan(v[8])));
  return v[0];
}

TEST(SimdExp, WithinTwoUlpOfStdExp) {
  if (!mh::use_avx2()) {
    EXPECT_FALSE(mh::simd_info().compiled && mh::simd_info().cpu && !mh::simd_info().forced);
    return;
  }
  int far = 0;
  float v[8];
  for (int i = 0; i <= 200000; i += 8) {
    for (int k = 0; k < 8; ++k)
      v[k] = -87.0f + 87.5f * static_cast<float>(i + k) / 200000.0f;  // [-87, 0.5]
    float x[8];
    std::memcpy(x, v, sizeof v);
    mh::avx2::exp_from_lse_f32(v, 8, 1.0f, 0.0f);
    for (int k = 0; k < 8; ++k) {
      const double want = std::exp(static_cast<double>(x[k]));
      if (std::fabs(v[k] - want) > 2 * std::numeric_limits<float>::epsilon() * want) ++far;
    }
  }
  EXPECT_EQ(far, 0);
}

TEST(SimdExp, ClampsTheEndsAndPassesNaN) {
  if (!mh::use_avx2()) {
    EXPECT_FALSE(mh::use_avx2());
    return;
  }
  const float tiny = exp_kernel(-std::numeric_limits<float>::infinity());
  EXPECT_TRUE(tiny >= 0.0f && tiny < 2e-38f);
  EXPECT_EQ(exp_kernel(0.0f), 1.0f);
  EXPECT_TRUE(std::isfinite(exp_kernel(88.0f)));
  EXPECT_TRUE(std::isnan(exp_kernel(std::nanf(""))));
}

}  // namespace
