// 1D convolution (conv1d.h): forward against the header's formula for every
// padding / stride / dilation / groups combination, backward against finite
// differences (double), bitwise identical results for 1, 2 and 4 threads,
// and the shape rules.
#include <stdexcept>

#include "conv1d.h"
#include "test_util.h"

namespace {

using mh::idx;

// y from the definition in conv1d.h, in double.
std::vector<double> naive_conv1d(const std::vector<double>& x, const std::vector<double>& w,
                                 const double* bias, const mh::Conv1dShape& s) {
  const idx Cg = s.channels / s.groups, Fg = s.filters / s.groups;
  std::vector<double> y(static_cast<size_t>(s.batch * s.out_steps * s.filters), 0.0);
  for (idx b = 0; b < s.batch; ++b)
    for (idx t = 0; t < s.out_steps; ++t)
      for (idx o = 0; o < s.filters; ++o) {
        const idx g = o / Fg;
        double acc = bias ? bias[o] : 0.0;
        for (idx k = 0; k < s.kernel; ++k) {
          const idx p = t * s.stride + k * s.dilation - s.pad_left;
          if (p < 0 || p >= s.steps) continue;
          for (idx c = 0; c < Cg; ++c)
            acc += x[(b * s.steps + p) * s.channels + g * Cg + c] * w[(k * Cg + c) * s.filters + o];
        }
        y[(b * s.out_steps + t) * s.filters + o] = acc;
      }
  return y;
}

TEST(Conv1d, ShapesFollowKerasPaddingRules) {
  using P = mh::Conv1dPadding;
  auto s = mh::conv1d_shape(1, 5, 1, 1, 2, 1, 1, 1, P::Same);
  EXPECT_EQ(s.out_steps, 5);
  EXPECT_EQ(s.pad_left, 0);  // total padding 1: all on the right
  s = mh::conv1d_shape(1, 5, 1, 1, 4, 1, 1, 1, P::Same);
  EXPECT_EQ(s.pad_left, 1);  // total 3: 1 left, 2 right
  s = mh::conv1d_shape(1, 7, 1, 1, 3, 2, 1, 1, P::Valid);
  EXPECT_EQ(s.out_steps, 3);
  s = mh::conv1d_shape(1, 7, 1, 1, 3, 1, 3, 1, P::Causal);
  EXPECT_EQ(s.out_steps, 7);
  EXPECT_EQ(s.pad_left, 6);
  EXPECT_THROW(mh::conv1d_shape(1, 4, 1, 1, 3, 1, 2, 1, P::Valid), std::invalid_argument);
  EXPECT_THROW(mh::conv1d_shape(1, 4, 6, 4, 2, 1, 1, 4, P::Valid), std::invalid_argument);
  EXPECT_THROW(mh::conv1d_shape(1, 4, 4, 3, 2, 1, 1, 2, P::Valid), std::invalid_argument);
  EXPECT_THROW(mh::conv1d_shape(1, 4, 4, 4, 0, 1, 1, 1, P::Valid), std::invalid_argument);
}

TEST(Conv1d, ForwardMatchesDefinitionForEveryCombination) {
  int n = 0;
  for (int pad = 0; pad < 3; ++pad)
    for (idx stride : {1, 2, 3})
      for (idx dilation : {1, 2})
        for (idx groups : {1, 2})
          for (idx K : {1, 3})
            for (idx L : {6, 7}) {
              const auto s = mh::conv1d_shape(2, L, 4, 6, K, stride, dilation, groups,
                                              static_cast<mh::Conv1dPadding>(pad));
              const auto x = mhtest::random_values<double>(2 * L * 4, 10 + n);
              const auto w = mhtest::random_values<double>(K * (4 / groups) * 6, 20 + n);
              const auto bias = mhtest::random_values<double>(6, 30 + n);
              std::vector<double> y(static_cast<size_t>(2 * s.out_steps * 6));
              mh::conv1d_forward(x.data(), w.data(), bias.data(), s, y.data(), 1);
              mhtest::expect_close(y, naive_conv1d(x, w, bias.data(), s), 1e-13,
                                   "combination " + std::to_string(n));
              std::vector<float> yf(y.size());
              const auto xf = mhtest::cast_values<float>(x), wf = mhtest::cast_values<float>(w);
              mh::conv1d_forward(xf.data(), wf.data(), static_cast<const float*>(nullptr), s,
                                 yf.data(), 1);
              mhtest::expect_close(yf, naive_conv1d(x, w, nullptr, s), 1e-5, "float");
              ++n;
            }
  EXPECT_EQ(n, 144);
}

TEST(Conv1d, BackwardMatchesFiniteDifferences) {
  struct Case { idx L, C, F, K, stride, dilation, groups; mh::Conv1dPadding pad; };
  const Case cases[] = {{7, 4, 3, 3, 1, 1, 1, mh::Conv1dPadding::Valid},
                        {8, 4, 4, 2, 3, 1, 2, mh::Conv1dPadding::Same},
                        {6, 2, 2, 3, 1, 2, 1, mh::Conv1dPadding::Causal},
                        {5, 6, 6, 4, 2, 1, 3, mh::Conv1dPadding::Same}};
  int n = 0;
  for (const Case& c : cases) {
    const auto s = mh::conv1d_shape(2, c.L, c.C, c.F, c.K, c.stride, c.dilation, c.groups, c.pad);
    auto x = mhtest::random_values<double>(2 * c.L * c.C, 40 + n),
         w = mhtest::random_values<double>(c.K * (c.C / c.groups) * c.F, 50 + n),
         bias = mhtest::random_values<double>(c.F, 60 + n);
    const auto g = mhtest::random_values<double>(2 * s.out_steps * c.F, 70 + n);
    auto loss = [&] {
      std::vector<double> y(g.size());
      mh::conv1d_forward(x.data(), w.data(), bias.data(), s, y.data(), 1);
      return mhtest::weighted_sum(y.data(), g);
    };
    std::vector<double> dx(x.size(), 7.0), dw(w.size(), 7.0), db(bias.size(), 7.0);
    mh::conv1d_backward(x.data(), w.data(), g.data(), s, dx.data(), dw.data(), db.data(), 1);
    const std::string what = "case " + std::to_string(n);
    mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-8, what + " dx");
    mhtest::expect_close(dw, mhtest::numeric_gradient(w, loss), 1e-8, what + " dw");
    mhtest::expect_close(db, mhtest::numeric_gradient(bias, loss), 1e-8, what + " db");
    ++n;
  }
}

TEST(Conv1d, IdenticalForAnyThreadCount) {
  const auto s = mh::conv1d_shape(5, 700, 24, 32, 5, 1, 2, 2, mh::Conv1dPadding::Same);
  const auto x = mhtest::cast_values<float>(mhtest::random_values<double>(5 * 700 * 24, 1));
  const auto w = mhtest::cast_values<float>(mhtest::random_values<double>(5 * 12 * 32, 2));
  const auto b = mhtest::cast_values<float>(mhtest::random_values<double>(32, 3));
  const auto g = mhtest::cast_values<float>(mhtest::random_values<double>(5 * s.out_steps * 32, 4));
  std::vector<float> y1, dx1, dw1, db1;
  for (int threads : {1, 2, 4}) {
    std::vector<float> y(g.size()), dx(x.size()), dw(w.size()), db(b.size());
    mh::conv1d_forward(x.data(), w.data(), b.data(), s, y.data(), threads);
    mh::conv1d_backward(x.data(), w.data(), g.data(), s, dx.data(), dw.data(), db.data(), threads);
    if (threads == 1) {
      y1 = y; dx1 = dx; dw1 = dw; db1 = db;
      continue;
    }
    EXPECT_TRUE(mhtest::bitwise_equal(y, y1)) << threads;
    EXPECT_TRUE(mhtest::bitwise_equal(dx, dx1)) << threads;
    EXPECT_TRUE(mhtest::bitwise_equal(dw, dw1)) << threads;
    EXPECT_TRUE(mhtest::bitwise_equal(db, db1)) << threads;
  }
}

TEST(Conv1d, EmptyBatchGivesZeroWeightGradients) {
  const auto s = mh::conv1d_shape(0, 5, 2, 2, 2, 1, 1, 1, mh::Conv1dPadding::Valid);
  const std::vector<double> w(8, 1.0);
  std::vector<double> dw(8, 3.0), db(2, 3.0);
  mh::conv1d_backward(static_cast<const double*>(nullptr), w.data(),
                      static_cast<const double*>(nullptr), s, static_cast<double*>(nullptr),
                      dw.data(), db.data(), 2);
  for (double v : dw) EXPECT_EQ(v, 0.0);
  for (double v : db) EXPECT_EQ(v, 0.0);
}

}  // namespace
