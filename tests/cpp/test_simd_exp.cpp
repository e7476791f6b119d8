// exp_nonpositive (simd_exp.h), when the build has it: bit for bit Eigen's
// pexp over the softmax range, within 2 ulp of std::exp, the clamped ends,
// and NaN passing through.
#include "simd_exp.h"

#ifdef MH_SIMD_EXP

#include <Eigen/Core>
#include <cmath>
#include <cstring>
#include <limits>

#include "test_util.h"

namespace {

float exp8(float x, float* eigen) {
  alignas(32) float in[8], out[8], ref[8];
  for (float& v : in) v = x;
  _mm256_store_ps(out, mh::detail::exp_nonpositive(_mm256_load_ps(in)));
  _mm256_store_ps(ref, Eigen::internal::pexp(_mm256_load_ps(in)));
  *eigen = ref[0];
  return out[0];
}

TEST(SimdExp, MatchesEigenBitwiseAndStdExpClosely) {
  int differ = 0, far = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 87.5f * static_cast<float>(i) / 200000.0f;  // [-87, 0.5]
    float eigen;
    const float got = exp8(x, &eigen);
    if (std::memcmp(&got, &eigen, sizeof got) != 0) ++differ;
    const double want = std::exp(static_cast<double>(x));
    if (std::fabs(got - want) > 2 * std::numeric_limits<float>::epsilon() * want) ++far;
  }
  EXPECT_EQ(differ, 0);
  EXPECT_EQ(far, 0);
}

TEST(SimdExp, ClampsTheEndsAndPassesNaN) {
  float eigen;
  const float tiny = exp8(-std::numeric_limits<float>::infinity(), &eigen);
  EXPECT_TRUE(tiny >= 0.0f && tiny < 2e-38f);
  EXPECT_EQ(exp8(0.0f, &eigen), 1.0f);
  EXPECT_TRUE(std::isfinite(exp8(88.0f, &eigen)));
  EXPECT_TRUE(std::isnan(exp8(std::nanf(""), &eigen)));
}

}  // namespace

#endif  // MH_SIMD_EXP
