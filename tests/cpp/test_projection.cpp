// Projection layers (projection.h): GEMM + periodic bias + activation,
// forward against naive loops and backward against finite differences.
#include <cmath>

#include "projection.h"
#include "test_util.h"

namespace {

using mh::Activation;
using mh::idx;

const idx kRows = 4, kIn = 3, kOut = 5;

// z = x w + bias[i mod period] over the flat (rows, out) output, then tanh.
std::vector<double> reference(const std::vector<double>& x, const std::vector<double>& w,
                              const std::vector<double>& bias, idx period, bool act) {
  std::vector<double> y = mhtest::naive_dense(x.data(), kRows, kIn, w.data(),
                                              static_cast<const double*>(nullptr), kOut);
  for (size_t i = 0; i < y.size(); ++i) {
    if (!bias.empty()) y[i] += bias[i % period];
    if (act) y[i] = std::tanh(y[i]);
  }
  return y;
}

TEST(Projection, ForwardAndBackwardWithColumnAndPeriodicBias) {
  auto x = mhtest::random_values<double>(kRows * kIn, 1),
       w = mhtest::random_values<double>(kIn * kOut, 2);
  const auto g = mhtest::random_values<double>(kRows * kOut, 3);
  // period = out (a column bias), 2 * out (a bias over two rows), none.
  for (idx period : {kOut, 2 * kOut, idx(0)}) {
    for (bool act : {false, true}) {
      SCOPED_TRACE("period " + std::to_string(period) + (act ? ", tanh" : ", linear"));
      auto bias = mhtest::random_values<double>(period, 4);
      const Activation a = act ? Activation::Tanh : Activation::Linear;
      const double* b = bias.empty() ? nullptr : bias.data();
      std::vector<double> y(static_cast<size_t>(kRows * kOut)), saved(y.size());
      mh::projection_forward(x.data(), kRows, kIn, w.data(), kOut, b, period, a, y.data(),
                             saved.data(), 1);
      mhtest::expect_close(y, reference(x, w, bias, period, act), 1e-12, "forward");
      std::vector<double> dx(x.size()), dw(w.size()), db(bias.size());
      mh::projection_backward(x.data(), kRows, kIn, w.data(), kOut, period, a, saved.data(),
                              g.data(), dx.data(), dw.data(), b ? db.data() : nullptr, 1);
      auto loss = [&] {
        std::vector<double> out(y.size());
        mh::projection_forward(x.data(), kRows, kIn, w.data(), kOut, bias.empty() ? nullptr : bias.data(),
                               period, a, out.data(), static_cast<double*>(nullptr), 1);
        return mhtest::weighted_sum(out.data(), g);
      };
      mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-7, "dx");
      mhtest::expect_close(dw, mhtest::numeric_gradient(w, loss), 1e-7, "dw");
      if (b) mhtest::expect_close(db, mhtest::numeric_gradient(bias, loss), 1e-7, "dbias");
    }
  }
}

}  // namespace
