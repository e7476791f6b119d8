// The counter-based dropout generator (dropout_rng.h) and the Dropout layer
// built on it (dropout.h).
#include <set>
#include <stdexcept>

#include "dropout.h"
#include "dropout_rng.h"
#include "test_util.h"

namespace {

using mh::idx;

constexpr uint64_t kSamples = 200000;

TEST(DropoutRng, UniformsLieInUnitInterval) {
  const uint64_t key = mh::dropout_key(42, 0);
  double lo = 1, hi = 0, sum = 0;
  for (uint64_t i = 0; i < kSamples; ++i) {
    const double u = mh::dropout_uniform(key, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
  }
  EXPECT_LT(lo, 1e-3);
  EXPECT_GT(hi, 1 - 1e-3);
  EXPECT_NEAR(sum / kSamples, 0.5, 0.005);
}

TEST(DropoutRng, RateZeroKeepsAllAndRateOneDropsAll) {
  for (uint64_t seed : {0ULL, 1ULL, 0xffffffffffffffffULL}) {
    const uint64_t key = mh::dropout_key(seed, 3);
    for (uint64_t i = 0; i < 20000; ++i) {
      ASSERT_TRUE(mh::dropout_keep(key, i, 0.0));
      ASSERT_FALSE(mh::dropout_keep(key, i, 1.0));
    }
  }
}

TEST(DropoutRng, KeepFractionIsOneMinusRate) {
  // Binomial standard deviation at most 0.0012 for 200000 draws.
  for (double rate : {0.05, 0.3, 0.5, 0.9}) {
    const uint64_t key = mh::dropout_key(7, static_cast<uint64_t>(rate * 100));
    uint64_t kept = 0;
    for (uint64_t i = 0; i < kSamples; ++i) kept += mh::dropout_keep(key, i, rate);
    EXPECT_NEAR(static_cast<double>(kept) / kSamples, 1 - rate, 0.006) << "rate " << rate;
  }
}

TEST(DropoutRng, SameKeyAndIndexSameAnswerOtherKeysIndependent) {
  const uint64_t a = mh::dropout_key(1, 0), a2 = mh::dropout_key(1, 0), b = mh::dropout_key(1, 1),
                 c = mh::dropout_key(2, 0);
  EXPECT_EQ(a, a2);
  EXPECT_EQ(std::set<uint64_t>({a, b, c}).size(), 3u);
  uint64_t agree_ab = 0, agree_ac = 0;
  for (uint64_t i = 0; i < 50000; ++i) {
    const bool ka = mh::dropout_keep(a, i, 0.5);
    ASSERT_EQ(ka, mh::dropout_keep(a2, i, 0.5));
    ASSERT_EQ(mh::dropout_uniform(a, i), mh::dropout_uniform(a, i));
    agree_ab += ka == mh::dropout_keep(b, i, 0.5);
    agree_ac += ka == mh::dropout_keep(c, i, 0.5);
  }
  // Independent streams agree half the time.
  EXPECT_NEAR(agree_ab / 50000.0, 0.5, 0.015);
  EXPECT_NEAR(agree_ac / 50000.0, 0.5, 0.015);
  // Neighbouring indices are not correlated.
  uint64_t agree_next = 0;
  for (uint64_t i = 0; i < 50000; ++i)
    agree_next += mh::dropout_keep(a, i, 0.5) == mh::dropout_keep(a, i + 1, 0.5);
  EXPECT_NEAR(agree_next / 50000.0, 0.5, 0.015);
}

TEST(DropoutLayer, ScalesKeptElementsAndMatchesTheGenerator) {
  const std::vector<idx> dims = {3, 4, 5};
  const auto x = mhtest::random_values<double>(60, 1);
  const uint64_t key = mh::dropout_key(9, 9);
  std::vector<double> y(60);
  mh::dropout_apply(x.data(), dims, dims, 0.4, key, y.data(), 1);
  for (idx i = 0; i < 60; ++i) {
    const double expected = mh::dropout_keep(key, static_cast<uint64_t>(i), 0.4) ? x[i] / 0.6 : 0;
    EXPECT_DOUBLE_EQ(y[i], expected) << i;
  }
  mh::dropout_apply(x.data(), dims, dims, 0.0, key, y.data(), 1);
  EXPECT_EQ(y, x);
  mh::dropout_apply(x.data(), dims, dims, 1.0, key, y.data(), 1);
  EXPECT_EQ(y, std::vector<double>(60, 0.0));
}

TEST(DropoutLayer, NoiseShapeBroadcastsTheMask) {
  // Noise (3, 1, 5): the mask is shared along axis 1; element (i, j, k) uses
  // mask element i * 5 + k.
  const std::vector<idx> dims = {3, 4, 5}, noise = {3, 1, 5};
  const std::vector<double> x(60, 1.0);
  const uint64_t key = mh::dropout_key(3, 1);
  for (int threads : {1, 4}) {
    std::vector<float> y(60);
    const std::vector<float> xf(x.begin(), x.end());
    mh::dropout_apply(xf.data(), dims, noise, 0.5, key, y.data(), threads);
    for (idx i = 0; i < 3; ++i)
      for (idx j = 0; j < 4; ++j)
        for (idx k = 0; k < 5; ++k) {
          const bool keep = mh::dropout_keep(key, static_cast<uint64_t>(i * 5 + k), 0.5);
          EXPECT_EQ(y[(i * 4 + j) * 5 + k], keep ? 2.0f : 0.0f);
        }
  }
  // Leading and trailing broadcast axes, and an empty input.
  std::vector<double> y(60);
  mh::dropout_apply(x.data(), dims, std::vector<idx>{1, 4, 1}, 0.5, key, y.data(), 1);
  for (idx i = 0; i < 60; ++i)
    EXPECT_EQ(y[i], mh::dropout_keep(key, static_cast<uint64_t>((i / 5) % 4), 0.5) ? 2.0 : 0.0);
  mh::dropout_apply(x.data(), std::vector<idx>{3, 0}, std::vector<idx>{1, 0}, 0.5, key, y.data(),
                    1);
}

}  // namespace
