// Pooling over steps (pooling.h): global average pooling with and without a
// mask; windowed average and max pooling against their definition, finite
// differences and any thread count.
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

namespace {

// Windowed pooling from the definition in pooling.h, in double.
std::vector<double> naive_pool1d(const std::vector<double>& x, const mh::Pool1dShape& s, bool max) {
  std::vector<double> y(static_cast<size_t>(s.batch * s.out_steps * s.channels));
  for (idx b = 0; b < s.batch; ++b)
    for (idx t = 0; t < s.out_steps; ++t)
      for (idx c = 0; c < s.channels; ++c) {
        double acc = max ? -INFINITY : 0.0;
        idx count = 0;
        for (idx i = 0; i < s.pool; ++i) {
          const idx p = t * s.stride - s.pad_left + i;
          if (p < 0 || p >= s.steps) continue;
          const double v = x[(b * s.steps + p) * s.channels + c];
          acc = max ? std::max(acc, v) : acc + v;
          ++count;
        }
        y[(b * s.out_steps + t) * s.channels + c] = max ? acc : acc / count;
      }
  return y;
}

TEST(WindowPooling, ForwardMatchesDefinitionBackwardMatchesFiniteDifferences) {
  int n = 0;
  for (bool same : {false, true})
    for (idx pool : {1, 2, 3, 4})
      for (idx stride : {1, 2, 3})
        for (idx L : {5, 6}) {
          const auto s = mh::pool1d_shape(2, L, 3, pool, stride, same);
          auto x = mhtest::random_values<double>(2 * L * 3, 80 + n);
          const auto g = mhtest::random_values<double>(2 * s.out_steps * 3, 90 + n);
          for (bool max : {false, true}) {
            const std::string what = std::to_string(n) + (max ? " max" : " average");
            std::vector<double> y(g.size());
            if (max) mh::max_pool1d_forward(x.data(), s, y.data(), 1);
            else mh::average_pool1d_forward(x.data(), s, y.data(), 1);
            mhtest::expect_close(y, naive_pool1d(x, s, max), 1e-14, what);
            auto loss = [&] {
              std::vector<double> out(g.size());
              if (max) mh::max_pool1d_forward(x.data(), s, out.data(), 1);
              else mh::average_pool1d_forward(x.data(), s, out.data(), 1);
              return mhtest::weighted_sum(out.data(), g);
            };
            std::vector<double> dx(x.size(), 5.0);
            if (max) mh::max_pool1d_backward(x.data(), g.data(), s, dx.data(), 1);
            else mh::average_pool1d_backward(g.data(), s, dx.data(), 1);
            mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-8, what + " dx");
          }
          ++n;
        }
  EXPECT_EQ(n, 48);
  EXPECT_THROW(mh::pool1d_shape(1, 2, 1, 3, 1, false), std::invalid_argument);
  EXPECT_THROW(mh::pool1d_shape(1, 2, 1, 1, 0, false), std::invalid_argument);
}

TEST(WindowPooling, MaxGradientGoesToTheFirstMaximum) {
  const auto s = mh::pool1d_shape(1, 5, 1, 3, 1, false);
  const std::vector<double> x = {1, 3, 3, 0, 3}, g = {1, 10, 100};
  std::vector<double> dx(5);
  mh::max_pool1d_backward(x.data(), g.data(), s, dx.data(), 1);
  mhtest::expect_close(dx, {0, 11, 100, 0, 0}, 0, "ties");
}

TEST(WindowPooling, IdenticalForAnyThreadCount) {
  const auto s = mh::pool1d_shape(6, 500, 300, 4, 3, true);
  const auto x = mhtest::cast_values<float>(mhtest::random_values<double>(6 * 500 * 300, 11));
  const auto g = mhtest::cast_values<float>(mhtest::random_values<double>(6 * s.out_steps * 300, 12));
  std::vector<float> ref;
  for (int threads : {1, 2, 4}) {
    std::vector<float> ya(g.size()), ym(g.size()), da(x.size()), dm(x.size());
    mh::average_pool1d_forward(x.data(), s, ya.data(), threads);
    mh::max_pool1d_forward(x.data(), s, ym.data(), threads);
    mh::average_pool1d_backward(g.data(), s, da.data(), threads);
    mh::max_pool1d_backward(x.data(), g.data(), s, dm.data(), threads);
    std::vector<float> all(ya);
    for (const auto* v : {&ym, &da, &dm}) all.insert(all.end(), v->begin(), v->end());
    if (threads == 1) ref = all;
    else EXPECT_TRUE(mhtest::bitwise_equal(all, ref)) << threads;
  }
}

}  // namespace
