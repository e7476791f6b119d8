// Layer normalization (layer_norm.h): forward against the header's formulas,
// backward against finite differences (double), with and without gamma/beta.
#include <cmath>

#include "layer_norm.h"
#include "test_util.h"

namespace {

using mh::idx;

TEST(LayerNorm, ForwardMatchesDefinition) {
  const idx rows = 4, n = 6;
  const double eps = 1e-3;
  const auto x = mhtest::random_values<double>(rows * n, 1, -3, 3),
             gamma = mhtest::random_values<double>(n, 2), beta = mhtest::random_values<double>(n, 3);
  for (bool affine : {false, true}) {
    std::vector<double> ref(x.size()), y(x.size());
    for (idx r = 0; r < rows; ++r) {
      double mean = 0, var = 0;
      for (idx j = 0; j < n; ++j) mean += x[r * n + j] / n;
      for (idx j = 0; j < n; ++j) var += (x[r * n + j] - mean) * (x[r * n + j] - mean) / n;
      for (idx j = 0; j < n; ++j) {
        const double xhat = (x[r * n + j] - mean) / std::sqrt(var + eps);
        ref[r * n + j] = affine ? xhat * gamma[j] + beta[j] : xhat;
      }
    }
    mh::layer_norm_forward(x.data(), rows, n, affine ? gamma.data() : nullptr,
                           affine ? beta.data() : nullptr, eps, y.data(), 1);
    mhtest::expect_close(y, ref, 1e-12, affine ? "affine" : "plain");
  }
}

TEST(LayerNorm, BackwardMatchesFiniteDifferences) {
  const idx rows = 3, n = 5;
  const double eps = 1e-3;
  auto x = mhtest::random_values<double>(rows * n, 4, -2, 2),
       gamma = mhtest::random_values<double>(n, 5), beta = mhtest::random_values<double>(n, 6);
  const auto g = mhtest::random_values<double>(rows * n, 7);
  for (bool affine : {false, true}) {
    auto loss = [&] {
      std::vector<double> y(x.size());
      mh::layer_norm_forward(x.data(), rows, n, affine ? gamma.data() : nullptr,
                             affine ? beta.data() : nullptr, eps, y.data(), 1);
      return mhtest::weighted_sum(y.data(), g);
    };
    std::vector<double> dx(x.size()), dgamma(n), dbeta(n);
    mh::layer_norm_backward(x.data(), rows, n, affine ? gamma.data() : nullptr, eps, g.data(),
                            dx.data(), dgamma.data(), dbeta.data(), 1);
    mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-7, "dx");
    if (affine) {
      mhtest::expect_close(dgamma, mhtest::numeric_gradient(gamma, loss), 1e-7, "dgamma");
      mhtest::expect_close(dbeta, mhtest::numeric_gradient(beta, loss), 1e-7, "dbeta");
    }
  }
}

}  // namespace
