// Materialised attention (attention.h) against a naive per-element
// implementation for every mask kind of attention_mask.h, with dropout, and
// its backward pass against finite differences (double).
#include <cmath>

#include "attention.h"
#include "test_util.h"

namespace {

using mh::idx;
using mhtest::expect_close;
using mhtest::MaskStore;
using mhtest::random_values;
using mhtest::dims;
using mhtest::mask_cases;

struct Inputs {
  std::vector<double> q, k, v;
};

Inputs random_inputs(const mh::MhaDims& d, uint64_t seed) {
  // Values of a few units so the softmax is far from uniform.
  return {random_values<double>(d.B * d.T * d.N * d.H, seed, -2, 2),
          random_values<double>(d.B * d.S * d.N * d.H, seed + 1, -2, 2),
          random_values<double>(d.B * d.S * d.N * d.Hv, seed + 2, -2, 2)};
}

template <class T>
void check_forward(const mh::MhaDims& d, const MaskStore& mc, const mh::DropoutSpec& drop,
                   double tol) {
  SCOPED_TRACE(mc.name + ", dropout " + std::to_string(drop.rate));
  const Inputs in = random_inputs(d, 40);
  const auto q = mhtest::cast_values<T>(in.q), k = mhtest::cast_values<T>(in.k),
             v = mhtest::cast_values<T>(in.v);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d.H));
  const mh::AttentionMask m = mc.view();
  std::vector<T> ctx(static_cast<size_t>(d.B * d.T * d.N * d.Hv), T(99)),
      probs(static_cast<size_t>(d.B * d.N * d.T * d.S), T(99));
  mh::attention_forward(d, q.data(), k.data(), v.data(), m, drop, static_cast<T>(scale),
                        ctx.data(), probs.data(), 2);
  std::vector<double> ctx_ref, probs_ref;
  mhtest::naive_attention(d, q.data(), k.data(), v.data(), m, drop, scale, &ctx_ref, &probs_ref);
  expect_close(probs, probs_ref, tol, "probs");
  expect_close(ctx, ctx_ref, tol, "ctx");
  // Masked entries are exactly zero, and every row sums to 1 or is all zero.
  for (idx b = 0; b < d.B; ++b)
    for (idx n = 0; n < d.N; ++n)
      for (idx t = 0; t < d.T; ++t) {
        double sum = 0;
        bool any = false;
        for (idx s = 0; s < d.S; ++s) {
          const T p = probs[((b * d.N + n) * d.T + t) * d.S + s];
          const bool ok = mhtest::naive_allowed(m, d, b, n, t, s);
          any = any || ok;
          if (!ok) {
            EXPECT_EQ(p, T(0)) << "masked (" << b << "," << n << "," << t << "," << s << ")";
          }
          sum += p;
        }
        EXPECT_NEAR(sum, any ? 1.0 : 0.0, 1e-5);
        if (!any) {
          for (idx h = 0; h < d.Hv; ++h) EXPECT_EQ(ctx[((b * d.T + t) * d.N + n) * d.Hv + h], T(0));
        }
      }
}

TEST(Attention, ForwardMatchesNaiveForEveryMaskKind) {
  const mh::MhaDims d = dims(2, 3, 4, 5, 3, 2);
  for (const MaskStore& mc : mask_cases(d)) {
    check_forward<double>(d, mc, mh::DropoutSpec{}, 1e-12);
    check_forward<float>(d, mc, mh::DropoutSpec{}, 1e-5);
  }
}

TEST(Attention, ForwardMoreQueriesThanKeys) {
  const mh::MhaDims d = dims(2, 2, 6, 3, 2, 3);
  for (const MaskStore& mc : mask_cases(d)) check_forward<double>(d, mc, mh::DropoutSpec{}, 1e-12);
}

TEST(Attention, ForwardDropoutMatchesDropoutKeep) {
  const mh::MhaDims d = dims(2, 3, 4, 5, 3, 2);
  const auto cases = mask_cases(d);
  for (double rate : {0.25, 0.7, 1.0}) {
    mh::DropoutSpec drop;
    drop.rate = rate;
    drop.key = mh::dropout_key(1234, 5);
    check_forward<double>(d, cases.front(), drop, 1e-12);
    check_forward<double>(d, cases[cases.size() - 2], drop, 1e-12);  // "everything"
    check_forward<float>(d, cases.back(), drop, 1e-5);
  }
}

// Gradients of L = sum(G * ctx) against central differences.
void check_backward(const mh::MhaDims& d, const MaskStore& mc, const mh::DropoutSpec& drop) {
  SCOPED_TRACE(mc.name + ", dropout " + std::to_string(drop.rate));
  Inputs in = random_inputs(d, 50);
  const auto g = random_values<double>(d.B * d.T * d.N * d.Hv, 53);
  const double scale = 0.8;
  const mh::AttentionMask m = mc.view();
  std::vector<double> ctx(g.size()), probs(static_cast<size_t>(d.B * d.N * d.T * d.S));
  auto forward = [&] {
    mh::attention_forward(d, in.q.data(), in.k.data(), in.v.data(), m, drop, scale, ctx.data(),
                          probs.data(), 1);
  };
  auto loss = [&] {
    forward();
    return mhtest::weighted_sum(ctx.data(), g);
  };
  forward();
  std::vector<double> dq(in.q.size(), 99), dk(in.k.size(), 99), dv(in.v.size(), 99);
  mh::attention_backward(d, in.q.data(), in.k.data(), in.v.data(), probs.data(), drop, scale,
                         g.data(), dq.data(), dk.data(), dv.data(), 2);
  expect_close(dq, mhtest::numeric_gradient(in.q, loss), 1e-7, "dq");
  expect_close(dk, mhtest::numeric_gradient(in.k, loss), 1e-7, "dk");
  expect_close(dv, mhtest::numeric_gradient(in.v, loss), 1e-7, "dv");
}

TEST(Attention, BackwardMatchesFiniteDifferencesForEveryMaskKind) {
  const mh::MhaDims d = dims(2, 2, 3, 4, 2, 3);
  for (const MaskStore& mc : mask_cases(d)) check_backward(d, mc, mh::DropoutSpec{});
  const mh::MhaDims tall = dims(1, 2, 5, 3, 2, 2);
  for (const MaskStore& mc : mask_cases(tall)) check_backward(tall, mc, mh::DropoutSpec{});
}

TEST(Attention, BackwardWithDropoutMatchesFiniteDifferences) {
  const mh::MhaDims d = dims(2, 2, 3, 4, 2, 3);
  const auto cases = mask_cases(d);
  for (double rate : {0.3, 1.0}) {
    mh::DropoutSpec drop;
    drop.rate = rate;
    drop.key = mh::dropout_key(99, 1);
    check_backward(d, cases.front(), drop);
    check_backward(d, cases.back(), drop);
  }
}

TEST(Attention, EmptyExtentsDoNotTouchMemory) {
  // S = 0: every row has no key, so ctx is zero; B = 0 / T = 0: nothing.
  for (const mh::MhaDims& d : {dims(2, 2, 3, 0, 2, 2), dims(0, 2, 3, 4, 2, 2),
                               dims(2, 2, 0, 4, 2, 2)}) {
    const Inputs in = random_inputs(d, 60);
    std::vector<double> ctx(static_cast<size_t>(d.B * d.T * d.N * d.Hv), 99.0),
        probs(static_cast<size_t>(d.B * d.N * d.T * d.S));
    mh::AttentionMask causal;
    causal.causal = true;
    for (const mh::AttentionMask& m : {mh::AttentionMask{}, causal}) {
      mh::attention_forward(d, in.q.data(), in.k.data(), in.v.data(), m, mh::DropoutSpec{}, 1.0,
                            ctx.data(), probs.data(), 2);
      for (double c : ctx) EXPECT_EQ(c, 0.0);
      std::vector<double> g(ctx.size(), 1.0), dq(in.q.size(), 99), dk(in.k.size(), 99),
          dv(in.v.size(), 99);
      mh::attention_backward(d, in.q.data(), in.k.data(), in.v.data(), probs.data(),
                             mh::DropoutSpec{}, 1.0, g.data(), dq.data(), dk.data(), dv.data(), 2);
      for (const auto* grad : {&dq, &dk, &dv})
        for (double x : *grad) EXPECT_EQ(x, 0.0);
    }
  }
}

}  // namespace
