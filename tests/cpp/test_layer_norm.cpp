// Layer normalization (layer_norm.h): forward against the header's formulas,
// backward against finite differences (double), with and without gamma/beta.
#include <cmath>

#include "layer_norm.h"
#include "test_util.h"

namespace {

using mh::idx;

// Sizes below, at and past the kernel's eight partial sums (and a tail);
// gamma and beta each on or off.
TEST(LayerNorm, ForwardMatchesDefinition) {
  for (idx n : {6, 16, 21}) {
    const idx rows = 4;
    const double eps = 1e-3;
    const auto x = mhtest::random_values<double>(rows * n, 1, -3, 3),
               gamma = mhtest::random_values<double>(n, 2), beta = mhtest::random_values<double>(n, 3);
    for (int use = 0; use < 4; ++use) {
      const bool with_gamma = use & 1, with_beta = use & 2;
      std::vector<double> ref(x.size()), y(x.size());
      for (idx r = 0; r < rows; ++r) {
        double mean = 0, var = 0;
        for (idx j = 0; j < n; ++j) mean += x[r * n + j] / n;
        for (idx j = 0; j < n; ++j) var += (x[r * n + j] - mean) * (x[r * n + j] - mean) / n;
        for (idx j = 0; j < n; ++j) {
          double v = (x[r * n + j] - mean) / std::sqrt(var + eps);
          if (with_gamma) v *= gamma[j];
          if (with_beta) v += beta[j];
          ref[r * n + j] = v;
        }
      }
      mh::layer_norm_forward(x.data(), rows, n, with_gamma ? gamma.data() : nullptr,
                             with_beta ? beta.data() : nullptr, eps, y.data(), 1);
      mhtest::expect_close(y, ref, 1e-12, "n " + std::to_string(n) + ", use " + std::to_string(use));
    }
  }
}

// Many rows and features (several row blocks and feature bands): the same
// bits on one thread and on four.
TEST(LayerNorm, ThreadCountDoesNotChangeResults) {
  const idx rows = 300, n = 200;
  const auto x = mhtest::random_values<float>(rows * n, 8, -3, 3), g = mhtest::random_values<float>(rows * n, 9),
             gamma = mhtest::random_values<float>(n, 10), beta = mhtest::random_values<float>(n, 11);
  std::vector<float> y1(x.size()), y4(x.size()), dx1(x.size()), dx4(x.size()), dg1(n), dg4(n), db1(n), db4(n);
  mh::layer_norm_forward(x.data(), rows, n, gamma.data(), beta.data(), 1e-3, y1.data(), 1);
  mh::layer_norm_forward(x.data(), rows, n, gamma.data(), beta.data(), 1e-3, y4.data(), 4);
  mh::layer_norm_backward(x.data(), rows, n, gamma.data(), 1e-3, g.data(), dx1.data(), dg1.data(), db1.data(), 1);
  mh::layer_norm_backward(x.data(), rows, n, gamma.data(), 1e-3, g.data(), dx4.data(), dg4.data(), db4.data(), 4);
  EXPECT_EQ(y1, y4);
  EXPECT_EQ(dx1, dx4);
  EXPECT_EQ(dg1, dg4);
  EXPECT_EQ(db1, db4);
}

TEST(LayerNorm, BackwardMatchesFiniteDifferences) {
  for (idx n : {5, 19}) {
    const idx rows = 3;
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
}

}  // namespace
