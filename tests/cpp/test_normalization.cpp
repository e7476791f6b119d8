// RMS and unit normalization (normalization.h): forward against the
// header's formulas, backward against finite differences (double), the unit
// norm's cap, and identical results for any thread count.
#include <cmath>

#include "normalization.h"
#include "test_util.h"

namespace {

using mh::idx;

TEST(RmsNorm, ForwardMatchesDefinitionAndBackwardFiniteDifferences) {
  const idx rows = 4, n = 6;
  const double eps = 1e-3;
  auto x = mhtest::random_values<double>(rows * n, 1, -3, 3), scale = mhtest::random_values<double>(n, 2);
  for (bool scaled : {false, true}) {
    const double* sc = scaled ? scale.data() : nullptr;
    std::vector<double> ref(x.size()), y(x.size());
    for (idx r = 0; r < rows; ++r) {
      double ms = 0;
      for (idx j = 0; j < n; ++j) ms += x[r * n + j] * x[r * n + j] / n;
      for (idx j = 0; j < n; ++j) ref[r * n + j] = x[r * n + j] / std::sqrt(ms + eps) * (sc ? sc[j] : 1.0);
    }
    mh::rms_norm_forward(x.data(), rows, n, sc, eps, y.data(), 1);
    mhtest::expect_close(y, ref, 1e-13, scaled ? "scaled" : "plain");
    const auto g = mhtest::random_values<double>(rows * n, 3);
    auto loss = [&] {
      std::vector<double> out(x.size());
      mh::rms_norm_forward(x.data(), rows, n, scaled ? scale.data() : nullptr, eps, out.data(), 1);
      return mhtest::weighted_sum(out.data(), g);
    };
    std::vector<double> dx(x.size()), ds(n, 9.0);
    mh::rms_norm_backward(x.data(), rows, n, sc, eps, g.data(), dx.data(), scaled ? ds.data() : nullptr, 1);
    mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-8, "dx");
    if (scaled) mhtest::expect_close(ds, mhtest::numeric_gradient(scale, loss), 1e-8, "dscale");
  }
}

TEST(UnitNorm, ForwardBackwardAndCap) {
  const idx rows = 3, n = 5;
  const double eps = 1e-12;
  auto x = mhtest::random_values<double>(rows * n, 4, -2, 2);
  for (idx j = 0; j < n; ++j) x[2 * n + j] = 0.0;  // an all-zero row stays zero
  std::vector<double> y(x.size()), ref(x.size());
  for (idx r = 0; r < rows; ++r) {
    double ss = 0;
    for (idx j = 0; j < n; ++j) ss += x[r * n + j] * x[r * n + j];
    const double f = std::min(1 / std::sqrt(ss), 1 / eps);
    for (idx j = 0; j < n; ++j) ref[r * n + j] = x[r * n + j] * f;
  }
  mh::unit_norm_forward(x.data(), rows, n, eps, y.data(), 1);
  mhtest::expect_close(y, ref, 1e-14, "forward");
  const auto g = mhtest::random_values<double>(rows * n, 5);
  std::vector<double> dx(x.size());
  mh::unit_norm_backward(x.data(), rows, n, eps, g.data(), dx.data(), 1);
  for (idx j = 0; j < n; ++j) EXPECT_DOUBLE_EQ(dx[2 * n + j], g[2 * n + j] / eps);  // capped: constant factor
  x.resize(2 * n);  // finite differences on the rows away from the cap
  auto loss = [&] {
    std::vector<double> out(x.size());
    mh::unit_norm_forward(x.data(), 2, n, eps, out.data(), 1);
    return mhtest::weighted_sum(out.data(), std::vector<double>(g.begin(), g.begin() + 2 * n));
  };
  dx.resize(x.size());
  mh::unit_norm_backward(x.data(), 2, n, eps, g.data(), dx.data(), 1);
  mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-8, "dx");
}

TEST(Normalization, IdenticalForAnyThreadCount) {
  const idx rows = 4000, n = 96;
  const auto x = mhtest::cast_values<float>(mhtest::random_values<double>(rows * n, 6, -3, 3));
  const auto g = mhtest::cast_values<float>(mhtest::random_values<double>(rows * n, 7));
  const auto sc = mhtest::cast_values<float>(mhtest::random_values<double>(n, 8));
  std::vector<float> ref[4];
  for (int threads : {1, 2, 4}) {
    std::vector<float> y(x.size()), dx(x.size()), ds(n), uy(x.size()), udx(x.size());
    mh::rms_norm_forward(x.data(), rows, n, sc.data(), 1e-6, y.data(), threads);
    mh::rms_norm_backward(x.data(), rows, n, sc.data(), 1e-6, g.data(), dx.data(), ds.data(), threads);
    mh::unit_norm_forward(x.data(), rows, n, 1e-12, uy.data(), threads);
    mh::unit_norm_backward(x.data(), rows, n, 1e-12, g.data(), udx.data(), threads);
    std::vector<float> all(y);
    for (const auto* v : {&dx, &ds, &uy, &udx}) all.insert(all.end(), v->begin(), v->end());
    if (threads == 1) ref[0] = all;
    else EXPECT_TRUE(mhtest::bitwise_equal(all, ref[0])) << threads;
  }
}

}  // namespace
