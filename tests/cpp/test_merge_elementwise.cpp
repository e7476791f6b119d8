// Subtract and Multiply on tensors of one shape (merge_elementwise.h),
// against plain loops in the R reference's order of double operations.
#include "merge_elementwise.h"
#include "test_util.h"

namespace {

using mh::idx;

TEST(MergeElementwise, SubtractAndNegateAreTheRoundedDifferences) {
  const idx n = 40000;  // above the serial threshold: several blocks
  const auto a = mhtest::random_values<float>(n, 1), b = mhtest::random_values<float>(n, 2, -1e-3, 1e3);
  std::vector<float> want(static_cast<size_t>(n));
  for (idx i = 0; i < n; ++i) want[i] = static_cast<float>(static_cast<double>(a[i]) - static_cast<double>(b[i]));
  for (int threads : {1, 2, 3}) {
    std::vector<float> y(static_cast<size_t>(n)), m(static_cast<size_t>(n));
    mh::subtract_forward(a.data(), b.data(), n, y.data(), threads);
    EXPECT_EQ(y, want) << "threads " << threads;
    mh::negate(a.data(), n, m.data(), threads);
    for (idx i = 0; i < n; ++i) ASSERT_EQ(m[i], -a[i]) << i;
  }
}

TEST(MergeElementwise, MultiplyForwardAndBackwardFollowTheReference) {
  const idx n = 33000;
  std::vector<std::vector<float>> x;
  for (uint64_t s = 0; s < 4; ++s) x.push_back(mhtest::random_values<float>(n, 10 + s, -3.0, 3.0));
  x[1][5] = 0.0f;  // zeros: no division anywhere
  x[2][7] = 0.0f;
  const auto g = mhtest::random_values<float>(n, 20);
  for (size_t k = 1; k <= 4; ++k) {
    std::vector<const float*> xs;
    for (size_t j = 0; j < k; ++j) xs.push_back(x[j].data());
    std::vector<float> y_want(static_cast<size_t>(n));
    std::vector<std::vector<float>> d_want(k, std::vector<float>(static_cast<size_t>(n)));
    for (idx i = 0; i < n; ++i) {
      float y = x[0][i];
      for (size_t j = 1; j < k; ++j) y = static_cast<float>(static_cast<double>(y) * static_cast<double>(x[j][i]));
      y_want[i] = y;
      for (size_t j = 0; j < k; ++j) {
        double prefix = 1, suffix = 1;
        for (size_t m = 0; m < j; ++m) prefix *= x[m][i];
        for (size_t m = k - 1; m > j; --m) suffix *= x[m][i];
        d_want[j][i] = static_cast<float>((static_cast<double>(g[i]) * prefix) * suffix);
      }
    }
    for (int threads : {1, 2}) {
      std::vector<float> y(static_cast<size_t>(n));
      mh::multiply_forward(xs, n, y.data(), threads);
      EXPECT_EQ(y, y_want) << k << " inputs, threads " << threads;
      std::vector<std::vector<float>> d(k, std::vector<float>(static_cast<size_t>(n), -7.0f));
      std::vector<float*> dp;
      for (auto& v : d) dp.push_back(v.data());
      mh::multiply_backward(xs, g.data(), n, dp, threads);
      for (size_t j = 0; j < k; ++j) EXPECT_EQ(d[j], d_want[j]) << "input " << j << " of " << k;
    }
  }
  // two inputs: the gradients are g * the other factor, exactly
  std::vector<float> d0(static_cast<size_t>(n)), d1(static_cast<size_t>(n));
  mh::multiply_backward(std::vector<const float*>{x[0].data(), x[1].data()}, g.data(), n,
                        std::vector<float*>{d0.data(), d1.data()}, 2);
  for (idx i = 0; i < n; ++i) {
    ASSERT_EQ(d0[i], g[i] * x[1][i]) << i;
    ASSERT_EQ(d1[i], g[i] * x[0][i]) << i;
  }
  EXPECT_THROW(mh::multiply_backward(std::vector<const float*>{x[0].data()}, g.data(), n,
                                     std::vector<float*>{}, 1),
               std::invalid_argument);
}

}  // namespace
