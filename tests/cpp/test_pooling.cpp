// Global average pooling over steps (pooling.h) with and without a mask.
#include "pooling.h"
#include "test_util.h"

namespace {

using mh::idx;

TEST(Pooling, AveragesCountedStepsAndBackpropagates) {
  const idx B = 3, steps = 4, C = 2;
  auto x = mhtest::random_values<double>(B * steps * C, 1);
  // Sequence 0 all steps, 1 two steps, 2 none (-> zeros, never NaN).
  const std::vector<int32_t> mask = {1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0};
  const auto g = mhtest::random_values<double>(B * C, 2);
  for (bool masked : {false, true}) {
    const int32_t* m = masked ? mask.data() : nullptr;
    std::vector<double> y(static_cast<size_t>(B * C)), ref(y.size(), 0.0);
    for (idx b = 0; b < B; ++b) {
      idx count = 0;
      for (idx t = 0; t < steps; ++t) count += !m || m[b * steps + t];
      for (idx t = 0; t < steps; ++t)
        for (idx c = 0; c < C; ++c)
          if (!m || m[b * steps + t]) ref[b * C + c] += x[(b * steps + t) * C + c] / count;
    }
    mh::average_steps_forward(x.data(), B, steps, C, m, y.data(), 1);
    mhtest::expect_close(y, ref, 1e-14, masked ? "masked" : "plain");

    std::vector<double> dx(x.size(), 99.0);
    mh::average_steps_backward(g.data(), B, steps, C, m, dx.data(), 1);
    auto loss = [&] {
      std::vector<double> out(static_cast<size_t>(B * C));
      mh::average_steps_forward(x.data(), B, steps, C, m, out.data(), 1);
      return mhtest::weighted_sum(out.data(), g);
    };
    mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-8, "dx");
  }
}

}  // namespace
