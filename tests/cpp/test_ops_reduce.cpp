// Reductions, softmax and cumulative ops (ops_reduce.h) on column-major
// arrays: every kernel against naive loops over the definitions (each
// element's output index decoded from its column-major multi-index), the
// backward passes against central differences, and bitwise identical
// results for 1, 2 and 3 threads on shapes that split the reduced range.
#include <cmath>
#include <limits>
#include <vector>

#include "ops_reduce.h"
#include "test_util.h"

namespace {

using mh::idx;
using mh::ReduceOp;

const double kInf = std::numeric_limits<double>::infinity();

// Shapes and reduced-axis sets: contiguous blocks, split blocks, size-1 axes,
// everything, nothing, a rank-0 array.
struct Case {
  std::vector<idx> dims;
  std::vector<int> red;
};

std::vector<Case> cases() {
  return {
      {{5}, {1}},
      {{5}, {0}},
      {{}, {}},
      {{3, 4}, {1, 0}},
      {{3, 4}, {0, 1}},
      {{3, 4}, {1, 1}},
      {{2, 3, 4}, {0, 1, 0}},
      {{2, 3, 4}, {1, 0, 1}},
      {{2, 1, 3, 4}, {0, 1, 1, 0}},
      {{3, 1, 4, 2, 3}, {1, 0, 0, 1, 0}},
      {{2, 3, 2, 3}, {0, 1, 0, 1}},
      {{4, 3, 5}, {0, 0, 0}},
      {{1, 1, 6}, {1, 1, 0}},
  };
}

std::vector<idx> kept_index(const Case& c) {
  // out index of every element (column-major over the kept axes).
  idx n = 1;
  for (idx d : c.dims) n *= d;
  std::vector<idx> out(static_cast<size_t>(n));
  for (idx p = 0; p < n; ++p) {
    idx rest = p, o = 0, stride = 1;
    for (size_t a = 0; a < c.dims.size(); ++a) {
      const idx k = rest % c.dims[a];
      rest /= c.dims[a];
      if (!c.red[a]) {
        o += k * stride;
        stride *= c.dims[a];
      }
    }
    out[p] = o;
  }
  return out;
}

idx n_outputs(const Case& c) {
  idx n = 1;
  for (size_t a = 0; a < c.dims.size(); ++a)
    if (!c.red[a]) n *= c.dims[a];
  return n;
}

// The group (in memory order) of every output.
std::vector<std::vector<double>> groups(const Case& c, const std::vector<double>& x) {
  const auto o = kept_index(c);
  std::vector<std::vector<double>> g(static_cast<size_t>(n_outputs(c)));
  for (size_t p = 0; p < x.size(); ++p) g[o[p]].push_back(x[p]);
  return g;
}

double naive(ReduceOp op, const std::vector<double>& v, double p) {
  double s = 0, m = 0;
  switch (op) {
    case ReduceOp::Sum: for (double a : v) s += a; return s;
    case ReduceOp::Prod: s = 1; for (double a : v) s *= a; return s;
    case ReduceOp::Max: s = -kInf; for (double a : v) s = std::max(s, a); return s;
    case ReduceOp::Min: s = kInf; for (double a : v) s = std::min(s, a); return s;
    case ReduceOp::Any: for (double a : v) if (a != 0) return 1; return 0;
    case ReduceOp::All: for (double a : v) if (a == 0) return 0; return 1;
    case ReduceOp::CountNonzero: for (double a : v) s += a != 0; return s;
    case ReduceOp::Mean: for (double a : v) s += a; return s / v.size();
    case ReduceOp::Var:
    case ReduceOp::Std:
      for (double a : v) m += a / v.size();
      for (double a : v) s += (a - m) * (a - m) / v.size();
      return op == ReduceOp::Std ? std::sqrt(s) : s;
    case ReduceOp::LogSumExp: for (double a : v) s += std::exp(a); return std::log(s);
    case ReduceOp::Norm2: for (double a : v) s += a * a; return std::sqrt(s);
    case ReduceOp::SumAbs: for (double a : v) s += std::fabs(a); return s;
    case ReduceOp::MaxAbs: s = -kInf; for (double a : v) s = std::max(s, std::fabs(a)); return s;
    case ReduceOp::MinAbs: s = kInf; for (double a : v) s = std::min(s, std::fabs(a)); return s;
    case ReduceOp::NormP: for (double a : v) s += std::pow(std::fabs(a), p); return std::pow(s, 1 / p);
    case ReduceOp::ArgMax: {
      idx k = 0;
      for (size_t i = 1; i < v.size(); ++i) if (v[i] > v[k]) k = static_cast<idx>(i);
      return static_cast<double>(k);
    }
    case ReduceOp::ArgMin: {
      idx k = 0;
      for (size_t i = 1; i < v.size(); ++i) if (v[i] < v[k]) k = static_cast<idx>(i);
      return static_cast<double>(k);
    }
    default: return NAN;
  }
}

std::vector<double> run_forward(ReduceOp op, const Case& c, const std::vector<double>& x, double p,
                                int threads = 1) {
  const auto plan = mh::make_reduce_plan(c.dims, c.red);
  std::vector<double> out(static_cast<size_t>(plan.outputs()));
  mh::reduce_forward(op, x.data(), plan, p, out.data(), threads);
  return out;
}

const ReduceOp kAllOps[] = {ReduceOp::Sum,    ReduceOp::Prod,   ReduceOp::Max,       ReduceOp::Min,
                            ReduceOp::Any,    ReduceOp::All,    ReduceOp::CountNonzero, ReduceOp::Mean,
                            ReduceOp::Var,    ReduceOp::Std,    ReduceOp::LogSumExp, ReduceOp::Norm2,
                            ReduceOp::SumAbs, ReduceOp::MaxAbs, ReduceOp::MinAbs,    ReduceOp::NormP,
                            ReduceOp::ArgMax, ReduceOp::ArgMin};

TEST(OpsReduce, PlanMergesRunsAndDropsUnitAxes) {
  const auto p = mh::make_reduce_plan({2, 1, 3, 4, 5}, {0, 1, 0, 1, 1});
  EXPECT_EQ(p.inner, 6);  // axes 0 and 2 (axis 1 has size 1)
  EXPECT_EQ(p.outer, 1);
  EXPECT_EQ(p.reduced, 20);
  ASSERT_EQ(p.rdim.size(), 1u);
  EXPECT_EQ(p.rstride[0], 6);
  const auto q = mh::make_reduce_plan({2, 3, 4}, {1, 0, 1});
  EXPECT_EQ(q.inner, 1);
  EXPECT_EQ(q.outer, 3);
  EXPECT_EQ(q.reduced, 8);
  EXPECT_THROW(mh::make_reduce_plan({2, 3}, {1}), std::invalid_argument);
  EXPECT_THROW(mh::make_reduce_plan({2, -3}, {1, 0}), std::length_error);
}

TEST(OpsReduce, ForwardMatchesNaiveLoops) {
  uint64_t seed = 10;
  for (const auto& c : cases()) {
    const auto plan = mh::make_reduce_plan(c.dims, c.red);
    auto x = mhtest::random_values<double>(plan.n, ++seed, -2, 2);
    x[0] = 0.0;  // a zero for any/all/count
    const auto g = groups(c, x);
    for (ReduceOp op : kAllOps) {
      const double p = 3.5;
      const auto out = run_forward(op, c, x, p);
      std::vector<double> ref(g.size());
      for (size_t o = 0; o < g.size(); ++o) ref[o] = naive(op, g[o], p);
      mhtest::expect_close(out, ref, 1e-12, "op " + std::to_string(static_cast<int>(op)) + " rank " +
                                                std::to_string(c.dims.size()));
    }
  }
}

TEST(OpsReduce, IntegerInputsMatchDoubles) {
  const Case c{{3, 4, 5}, {1, 0, 1}};
  std::vector<int32_t> xi(60);
  std::vector<double> xd(60);
  for (int i = 0; i < 60; ++i) xd[i] = xi[i] = (i * 37) % 11 - 5;
  const auto plan = mh::make_reduce_plan(c.dims, c.red);
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::ArgMin, ReduceOp::Mean, ReduceOp::CountNonzero}) {
    std::vector<double> a(plan.outputs()), b(plan.outputs());
    mh::reduce_forward(op, xi.data(), plan, 0.0, a.data(), 1);
    mh::reduce_forward(op, xd.data(), plan, 0.0, b.data(), 1);
    EXPECT_TRUE(mhtest::bitwise_equal(a, b)) << static_cast<int>(op);
  }
}

TEST(OpsReduce, NanInfAndTies) {
  const Case c{{4}, {1}};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // NaN propagates through max/min and wins argmax/argmin (the first one).
  std::vector<double> x = {1, nan, 3, nan};
  EXPECT_TRUE(std::isnan(run_forward(ReduceOp::Max, c, x, 0)[0]));
  EXPECT_TRUE(std::isnan(run_forward(ReduceOp::Min, c, x, 0)[0]));
  EXPECT_EQ(run_forward(ReduceOp::ArgMax, c, x, 0)[0], 1);
  EXPECT_EQ(run_forward(ReduceOp::ArgMin, c, x, 0)[0], 1);
  // first occurrence on ties
  x = {2, 5, 5, -1};
  EXPECT_EQ(run_forward(ReduceOp::ArgMax, c, x, 0)[0], 1);
  x = {-1, 5, -1, 5};
  EXPECT_EQ(run_forward(ReduceOp::ArgMin, c, x, 0)[0], 0);
  // logsumexp: stable, and of -Inf only is -Inf; +Inf gives +Inf
  x = {1e4, 1e4, -kInf, 1e4 - 1};
  EXPECT_NEAR(run_forward(ReduceOp::LogSumExp, c, x, 0)[0], 1e4 + std::log(2 + std::exp(-1.0)), 1e-9);
  x = {-kInf, -kInf, -kInf, -kInf};
  EXPECT_EQ(run_forward(ReduceOp::LogSumExp, c, x, 0)[0], -kInf);
  x = {1, kInf, 2, 3};
  EXPECT_EQ(run_forward(ReduceOp::LogSumExp, c, x, 0)[0], kInf);
  // the 2-norm is rescaled on overflow and underflow
  x = {3e200, 4e200, 0, 0};
  EXPECT_NEAR(run_forward(ReduceOp::Norm2, c, x, 0)[0] / 5e200, 1.0, 1e-15);
  x = {3e-200, -4e-200, 0, 0};
  EXPECT_NEAR(run_forward(ReduceOp::Norm2, c, x, 0)[0] / 5e-200, 1.0, 1e-15);
  x = {0, 0, 0, 0};
  EXPECT_EQ(run_forward(ReduceOp::Norm2, c, x, 0)[0], 0.0);
  x = {1, kInf, 0, 0};
  EXPECT_EQ(run_forward(ReduceOp::Norm2, c, x, 0)[0], kInf);
}

TEST(OpsReduce, EmptyArrays) {
  // (0, 3) reduced over axis 0: three empty groups with the identities.
  const Case c{{0, 3}, {1, 0}};
  std::vector<double> x;
  EXPECT_EQ(run_forward(ReduceOp::Sum, c, x, 0), std::vector<double>({0, 0, 0}));
  EXPECT_EQ(run_forward(ReduceOp::Prod, c, x, 0), std::vector<double>({1, 1, 1}));
  EXPECT_EQ(run_forward(ReduceOp::Max, c, x, 0), std::vector<double>({-kInf, -kInf, -kInf}));
  EXPECT_TRUE(std::isnan(run_forward(ReduceOp::Mean, c, x, 0)[0]));
  // (0, 3) over axis 1: no outputs
  EXPECT_TRUE(run_forward(ReduceOp::Sum, Case{{0, 3}, {0, 1}}, x, 0).empty());
}

// Backward of sum(g * reduce(x)) against central differences. Max/min data
// have no ties; the tie rule is tested on its own.
TEST(OpsReduce, BackwardMatchesFiniteDifferences) {
  uint64_t seed = 100;
  const ReduceOp ops[] = {ReduceOp::Sum,    ReduceOp::Prod,   ReduceOp::Max,       ReduceOp::Min,
                          ReduceOp::Mean,   ReduceOp::Var,    ReduceOp::Std,       ReduceOp::LogSumExp,
                          ReduceOp::Norm2,  ReduceOp::SumAbs, ReduceOp::MaxAbs,    ReduceOp::MinAbs,
                          ReduceOp::NormP};
  for (const auto& c : cases()) {
    const auto plan = mh::make_reduce_plan(c.dims, c.red);
    auto x = mhtest::random_values<double>(plan.n, ++seed, 0.3, 2);
    for (size_t i = 0; i < x.size(); i += 2) x[i] = -x[i];  // signs, no zeros
    const auto g = mhtest::random_values<double>(plan.outputs(), ++seed);
    for (ReduceOp op : ops) {
      const double p = 3.0;
      auto loss = [&] {
        const auto out = run_forward(op, c, x, p);
        return mhtest::weighted_sum(out.data(), g);
      };
      const auto out = run_forward(op, c, x, p);
      std::vector<double> dx(x.size());
      mh::reduce_backward(op, x.data(), plan, p, out.data(), g.data(), dx.data(), 1);
      mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-6,
                           "backward of op " + std::to_string(static_cast<int>(op)));
    }
  }
}

TEST(OpsReduce, BackwardSpecialCases) {
  const Case c{{4}, {1}};
  const auto plan = mh::make_reduce_plan(c.dims, c.red);
  std::vector<double> dx(4), g = {6.0};
  // ties of the maximum share the gradient evenly
  std::vector<double> x = {1, 3, 3, 3};
  auto out = run_forward(ReduceOp::Max, c, x, 0);
  mh::reduce_backward(ReduceOp::Max, x.data(), plan, 0, out.data(), g.data(), dx.data(), 1);
  EXPECT_EQ(dx, std::vector<double>({0, 2, 2, 2}));
  // an output from `initial` (larger than every element) gives no gradient
  std::vector<double> init_out = {10.0};
  mh::reduce_backward(ReduceOp::Max, x.data(), plan, 0, init_out.data(), g.data(), dx.data(), 1);
  EXPECT_EQ(dx, std::vector<double>({0, 0, 0, 0}));
  // prod with one zero: only the zero gets the product of the others; two zeros: none
  x = {2, 0, 3, 4};
  out = run_forward(ReduceOp::Prod, c, x, 0);
  mh::reduce_backward(ReduceOp::Prod, x.data(), plan, 0, out.data(), g.data(), dx.data(), 1);
  EXPECT_EQ(dx, std::vector<double>({0, 6 * 24, 0, 0}));
  x = {2, 0, 3, 0};
  out = run_forward(ReduceOp::Prod, c, x, 0);
  mh::reduce_backward(ReduceOp::Prod, x.data(), plan, 0, out.data(), g.data(), dx.data(), 1);
  EXPECT_EQ(dx, std::vector<double>({0, 0, 0, 0}));
  // std and the 2-norm at a constant / zero vector: 0, not NaN
  x = {2, 2, 2, 2};
  out = run_forward(ReduceOp::Std, c, x, 0);
  mh::reduce_backward(ReduceOp::Std, x.data(), plan, 0, out.data(), g.data(), dx.data(), 1);
  EXPECT_EQ(dx, std::vector<double>({0, 0, 0, 0}));
  x = {0, 0, 0, 0};
  out = run_forward(ReduceOp::Norm2, c, x, 0);
  mh::reduce_backward(ReduceOp::Norm2, x.data(), plan, 0, out.data(), g.data(), dx.data(), 1);
  EXPECT_EQ(dx, std::vector<double>({0, 0, 0, 0}));
}

// ---- softmax ------------------------------------------------------------------------

TEST(OpsReduce, SoftmaxMatchesDefinitionAndGradient) {
  uint64_t seed = 200;
  for (const auto& c : cases()) {
    const auto plan = mh::make_reduce_plan(c.dims, c.red);
    auto x = mhtest::random_values<double>(plan.n, ++seed, -3, 3);
    const auto o = kept_index(c);
    const auto gr = groups(c, x);
    std::vector<double> lse(gr.size());
    for (size_t k = 0; k < gr.size(); ++k) lse[k] = naive(ReduceOp::LogSumExp, gr[k], 0);
    for (bool log : {false, true}) {
      std::vector<double> y(x.size()), ref(x.size());
      for (size_t p = 0; p < x.size(); ++p) ref[p] = log ? x[p] - lse[o[p]] : std::exp(x[p] - lse[o[p]]);
      mh::softmax_forward(x.data(), plan, log, y.data(), 1);
      mhtest::expect_close(y, ref, 1e-12, log ? "log_softmax" : "softmax");
      const auto g = mhtest::random_values<double>(plan.n, ++seed);
      auto loss = [&] {
        std::vector<double> z(x.size());
        mh::softmax_forward(x.data(), plan, log, z.data(), 1);
        return mhtest::weighted_sum(z.data(), g);
      };
      std::vector<double> dx(x.size());
      mh::softmax_backward(y.data(), g.data(), plan, log, dx.data(), 1);
      mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-6, log ? "d log_softmax" : "d softmax");
    }
  }
}

TEST(OpsReduce, SoftmaxLargeAndMaskedInputs) {
  const auto plan = mh::make_reduce_plan({2, 3}, {0, 1});  // softmax over the last axis
  // column-major (2, 3): rows are (1e4, 1e4 + 1, -Inf) and (-Inf, -Inf, -Inf)
  std::vector<double> x = {1e4, -kInf, 1e4 + 1, -kInf, -kInf, -kInf}, y(6);
  mh::softmax_forward(x.data(), plan, false, y.data(), 1);
  EXPECT_NEAR(y[0], 1 / (1 + std::exp(1.0)), 1e-15);
  EXPECT_NEAR(y[2], 1 / (1 + std::exp(-1.0)), 1e-15);
  EXPECT_EQ(y[4], 0.0);                           // masked entry
  EXPECT_TRUE(std::isnan(y[1]) && std::isnan(y[3]) && std::isnan(y[5]));  // all -Inf: NaN
  mh::softmax_forward(x.data(), plan, true, y.data(), 1);
  EXPECT_NEAR(y[0], -std::log1p(std::exp(1.0)), 1e-12);
  EXPECT_EQ(y[4], -kInf);
}

// ---- cumulative -----------------------------------------------------------------------

TEST(OpsReduce, CumulativeMatchesLoopsAndGradients) {
  uint64_t seed = 300;
  const idx shapes[][3] = {{1, 7, 1}, {3, 5, 1}, {1, 4, 6}, {2, 3, 5}, {3, 1, 2}};
  for (const auto& s : shapes) {
    const idx outer = s[0], len = s[1], inner = s[2], n = outer * len * inner;
    auto x = mhtest::random_values<double>(n, ++seed, -1.5, 1.5);
    if (n > 3) x[inner] = 0.0;  // a zero for cumprod's gradient (position 1 of line 0)
    for (bool prod : {false, true}) {
      std::vector<double> y(n), ref(n);
      for (idx o = 0; o < outer; ++o)
        for (idx i = 0; i < inner; ++i) {
          double acc = prod ? 1 : 0;
          for (idx k = 0; k < len; ++k) {
            const idx at = (o * len + k) * inner + i;
            acc = prod ? acc * x[at] : acc + x[at];
            ref[at] = acc;
          }
        }
      mh::cumulative_forward(x.data(), outer, len, inner, prod, y.data(), 1);
      mhtest::expect_close(y, ref, 1e-13, prod ? "cumprod" : "cumsum");
      const auto g = mhtest::random_values<double>(n, ++seed);
      auto loss = [&] {
        std::vector<double> z(n);
        mh::cumulative_forward(x.data(), outer, len, inner, prod, z.data(), 1);
        return mhtest::weighted_sum(z.data(), g);
      };
      std::vector<double> dx(n);
      mh::cumulative_backward(x.data(), y.data(), g.data(), outer, len, inner, prod, dx.data(), 1);
      mhtest::expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-6, prod ? "d cumprod" : "d cumsum");
    }
  }
}

// ---- determinism --------------------------------------------------------------------------

// Shapes whose reductions split the reduced range into blocks (few outputs,
// long groups) and whose maps span many blocks: bitwise equal for 1, 2, 3
// threads.
TEST(OpsReduce, BitwiseIdenticalForAnyThreadCount) {
  const std::vector<Case> big = {
      {{300000}, {1}},                 // everything: one output, split reduced range
      {{3, 200000}, {0, 1}},           // last axis of R's layout: inner 3, reduced 2e5
      {{600, 500}, {1, 0}},            // first axis: contiguous groups
      {{40, 50, 60, 2}, {1, 0, 1, 0}}, // split runs
  };
  for (const auto& c : big) {
    const auto plan = mh::make_reduce_plan(c.dims, c.red);
    const auto x = mhtest::random_values<double>(plan.n, 7, -5, 5);
    const auto g = mhtest::random_values<double>(plan.outputs(), 8);
    const auto gx = mhtest::random_values<double>(plan.n, 9);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Var, ReduceOp::LogSumExp, ReduceOp::Norm2, ReduceOp::ArgMax,
                        ReduceOp::Max}) {
      std::vector<std::vector<double>> outs, grads;
      for (int threads : {1, 2, 3}) {
        std::vector<double> out(plan.outputs()), dx(plan.n);
        mh::reduce_forward(op, x.data(), plan, 0.0, out.data(), threads);
        mh::reduce_backward(op, x.data(), plan, 0.0, out.data(), g.data(), dx.data(), threads);
        outs.push_back(out);
        grads.push_back(dx);
      }
      EXPECT_TRUE(mhtest::bitwise_equal(outs[0], outs[1]) && mhtest::bitwise_equal(outs[0], outs[2]))
          << "forward of op " << static_cast<int>(op);
      EXPECT_TRUE(mhtest::bitwise_equal(grads[0], grads[1]) && mhtest::bitwise_equal(grads[0], grads[2]))
          << "backward of op " << static_cast<int>(op);
    }
    // and the blocked sum agrees with a plain sum to rounding
    std::vector<double> out(plan.outputs());
    mh::reduce_forward(ReduceOp::Sum, x.data(), plan, 0.0, out.data(), 2);
    const auto gr = groups(Case{c.dims, c.red}, x);
    std::vector<double> ref(gr.size());
    for (size_t k = 0; k < gr.size(); ++k) ref[k] = naive(ReduceOp::Sum, gr[k], 0);
    mhtest::expect_close(out, ref, 1e-9, "blocked sum");
    std::vector<std::vector<double>> ys;
    for (int threads : {1, 2, 3}) {
      std::vector<double> y(plan.n), dx(plan.n);
      mh::softmax_forward(x.data(), plan, false, y.data(), threads);
      mh::softmax_backward(y.data(), gx.data(), plan, false, dx.data(), threads);
      y.insert(y.end(), dx.begin(), dx.end());
      ys.push_back(y);
    }
    EXPECT_TRUE(mhtest::bitwise_equal(ys[0], ys[1]) && mhtest::bitwise_equal(ys[0], ys[2])) << "softmax";
  }
  const auto x = mhtest::random_values<double>(400000, 3, 0.9, 1.1);
  std::vector<std::vector<double>> ys;
  for (int threads : {1, 2, 3}) {
    std::vector<double> y(x.size());
    mh::cumulative_forward(x.data(), 2, 2000, 100, true, y.data(), threads);
    ys.push_back(y);
  }
  EXPECT_TRUE(mhtest::bitwise_equal(ys[0], ys[1]) && mhtest::bitwise_equal(ys[0], ys[2])) << "cumprod";
}

}  // namespace
