// Linear-algebra kernels (ops_linalg.h): strided copies, gathers, batched
// GEMM, contractions and dot-product attention against naive loops over
// their definitions (arrays column-major, axis 0 fastest, as R stores them);
// backwards against finite differences; thread-count invariance.
#include <cmath>
#include <stdexcept>

#include "ops_linalg.h"
#include "test_util.h"

namespace {

using mh::idx;

// Column-major strides of dims.
std::vector<idx> strides_of(const std::vector<idx>& d) {
  std::vector<idx> s(d.size());
  idx step = 1;
  for (size_t k = 0; k < d.size(); ++k) {
    s[k] = step;
    step *= d[k];
  }
  return s;
}

idx count_of(const std::vector<idx>& d) {
  idx n = 1;
  for (idx v : d) n *= v;
  return n;
}

// Calls f(index vector) for every index of dims, axis 0 fastest.
template <class F>
void for_each_index(const std::vector<idx>& dims, F f) {
  const idx n = count_of(dims);
  std::vector<idx> at(dims.size(), 0);
  for (idx i = 0; i < n; ++i) {
    f(at);
    for (size_t k = 0; k < dims.size(); ++k) {
      if (++at[k] < dims[k]) break;
      at[k] = 0;
    }
  }
}

TEST(OpsLinalg, StridedCopyPermutesBroadcastsAndScatters) {
  const std::vector<idx> sd = {3, 4, 5};
  const auto x = mhtest::random_values<double>(count_of(sd), 1);
  const auto ss = strides_of(sd);
  // dst dims (5, 3, 4) = src axes (2, 0, 1)
  const std::vector<idx> dd = {5, 3, 4};
  std::vector<double> y(static_cast<size_t>(count_of(dd)));
  mh::strided_copy(x.data(), {ss[2], ss[0], ss[1]}, y.data(), strides_of(dd), dd, 1);
  for_each_index(dd, [&](const std::vector<idx>& at) {
    const idx di = at[0] + 5 * (at[1] + 3 * at[2]);
    const idx si = at[1] + 3 * (at[2] + 4 * at[0]);
    ASSERT_EQ(y[di], x[si]);
  });
  // broadcast: src step 0 along a new axis of size 2
  std::vector<float> z(static_cast<size_t>(count_of(sd) * 2));
  mh::strided_copy(x.data(), {ss[0], ss[1], ss[2], 0}, z.data(), strides_of({3, 4, 5, 2}),
                   {3, 4, 5, 2}, 1);
  for (idx i = 0; i < count_of(sd); ++i) {
    ASSERT_EQ(z[i], static_cast<float>(x[i]));
    ASSERT_EQ(z[i + count_of(sd)], static_cast<float>(x[i]));
  }
  // scatter onto a diagonal: dst (4, 4), the index i goes to (i, i)
  const auto v = mhtest::random_values<double>(4, 2);
  std::vector<double> diag(16, 0.0);
  mh::strided_copy(v.data(), {1}, diag.data(), {5}, {4}, 1);
  for (idx i = 0; i < 4; ++i)
    for (idx j = 0; j < 4; ++j) ASSERT_EQ(diag[i + 4 * j], i == j ? v[i] : 0.0);
  // a large permutation: the same on 1 and 2 threads
  const std::vector<idx> big = {64, 70, 80};
  const auto bx = mhtest::random_values<double>(count_of(big), 3);
  const auto bs = strides_of(big);
  std::vector<double> b1(bx.size()), b2(bx.size());
  mh::strided_copy(bx.data(), {bs[1], bs[2], bs[0]}, b1.data(), strides_of({70, 80, 64}), {70, 80, 64}, 1);
  mh::strided_copy(bx.data(), {bs[1], bs[2], bs[0]}, b2.data(), strides_of({70, 80, 64}), {70, 80, 64}, 2);
  EXPECT_TRUE(mhtest::bitwise_equal(b1, b2));
  EXPECT_EQ(b1[1 + 70 * (2 + 80 * 3)], bx[3 + 64 * (1 + 70 * 2)]);
}

// C_p = op(A_p) op(B_p), naive.
std::vector<double> naive_batched(const std::vector<double>& a, bool ta, const std::vector<double>& b,
                                  bool tb, idx rows, idx cols, idx inner, idx batch) {
  std::vector<double> c(static_cast<size_t>(rows * cols * batch), 0.0);
  for (idx p = 0; p < batch; ++p)
    for (idx i = 0; i < rows; ++i)
      for (idx j = 0; j < cols; ++j) {
        double s = 0;
        for (idx k = 0; k < inner; ++k) {
          const double av = ta ? a[p * rows * inner + k + inner * i] : a[p * rows * inner + i + rows * k];
          const double bv = tb ? b[p * inner * cols + j + cols * k] : b[p * inner * cols + k + inner * j];
          s += av * bv;
        }
        c[p * rows * cols + i + rows * j] = s;
      }
  return c;
}

TEST(OpsLinalg, BatchedGemmMatchesLoopsInEverySplit) {
  struct Case {
    idx rows, cols, inner, batch;
  };
  // small; row/column blocks; many batches; inner chunks (small output, long inner)
  for (const Case cs : {Case{3, 4, 5, 2}, Case{300, 80, 96, 1}, Case{40, 30, 50, 40},
                        Case{8, 16, 20000, 1}, Case{5, 0, 3, 2}, Case{4, 3, 0, 2}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        SCOPED_TRACE(std::to_string(cs.rows) + "x" + std::to_string(cs.cols) + "x" +
                     std::to_string(cs.inner) + " batch " + std::to_string(cs.batch) +
                     (ta ? " ta" : "") + (tb ? " tb" : ""));
        const auto a = mhtest::random_values<double>(cs.rows * cs.inner * cs.batch, 4);
        const auto b = mhtest::random_values<double>(cs.inner * cs.cols * cs.batch, 5);
        std::vector<double> c1(static_cast<size_t>(cs.rows * cs.cols * cs.batch), 7.0), c2(c1);
        mh::batched_gemm(a.data(), ta, b.data(), tb, c1.data(), cs.rows, cs.cols, cs.inner, cs.batch, 1);
        mh::batched_gemm(a.data(), ta, b.data(), tb, c2.data(), cs.rows, cs.cols, cs.inner, cs.batch, 2);
        mhtest::expect_close(c1, naive_batched(a, ta, b, tb, cs.rows, cs.cols, cs.inner, cs.batch), 1e-12,
                             "C");
        EXPECT_TRUE(mhtest::bitwise_equal(c1, c2));
        if (cs.rows * cs.cols * cs.inner * cs.batch > (1 << 21)) {  // float too
          const auto af = mhtest::cast_values<float>(a), bf = mhtest::cast_values<float>(b);
          std::vector<float> f1(c1.size()), f2(c1.size());
          mh::batched_gemm(af.data(), ta, bf.data(), tb, f1.data(), cs.rows, cs.cols, cs.inner, cs.batch, 1);
          mh::batched_gemm(af.data(), ta, bf.data(), tb, f2.data(), cs.rows, cs.cols, cs.inner, cs.batch, 2);
          EXPECT_TRUE(mhtest::bitwise_equal(f1, f2));
          mhtest::expect_close(f1, c1, 2e-4, "float C");
        }
      }
    }
  }
}

// The plan of einsum "bnk,bkm->bnm" (R arrays x1 (B, n, k), x2 (B, k, m)):
// A (n, k, B), B (k, m, B), C (n, m, B) -> out (B, n, m).
mh::ContractionPlan batched_matmul_plan(idx B, idx n, idx k, idx m) {
  mh::ContractionPlan p;
  p.a.dims = {n, k, B};
  p.a.steps = {B, B * n, 1};
  p.a.kept = n * k * B;
  p.a.source_size = B * n * k;
  p.b.dims = {k, m, B};
  p.b.steps = {B, B * k, 1};
  p.b.kept = k * m * B;
  p.b.source_size = B * k * m;
  p.rows = n;
  p.inner = k;
  p.cols = m;
  p.batch = B;
  p.out_dims = {B, n, m};
  p.out_steps = {n * m, 1, n};
  return p;
}

TEST(OpsLinalg, ContractionForwardAndBackwardOfABatchedMatmul) {
  const idx B = 3, n = 4, k = 5, m = 2;
  const mh::ContractionPlan plan = batched_matmul_plan(B, n, k, m);
  auto x1 = mhtest::random_values<double>(B * n * k, 6), x2 = mhtest::random_values<double>(B * k * m, 7);
  const auto g = mhtest::random_values<double>(B * n * m, 8);
  std::vector<double> y(static_cast<size_t>(B * n * m));
  mh::contraction_forward<double>(x1.data(), x2.data(), plan, y.data(), 1);
  std::vector<double> ref(y.size(), 0.0);
  for (idx b = 0; b < B; ++b)
    for (idx i = 0; i < n; ++i)
      for (idx j = 0; j < m; ++j)
        for (idx l = 0; l < k; ++l)
          ref[b + B * (i + n * j)] += x1[b + B * (i + n * l)] * x2[b + B * (l + k * j)];
  mhtest::expect_close(y, ref, 1e-12, "forward");
  std::vector<double> d1(x1.size()), d2(x2.size());
  mh::contraction_backward<double>(x1.data(), x2.data(), g.data(), plan, d1.data(), d2.data(), 1);
  auto loss = [&] {
    std::vector<double> out(y.size());
    mh::contraction_forward<double>(x1.data(), x2.data(), plan, out.data(), 1);
    return mhtest::weighted_sum(out.data(), g);
  };
  mhtest::expect_close(d1, mhtest::numeric_gradient(x1, loss), 1e-7, "dx1");
  mhtest::expect_close(d2, mhtest::numeric_gradient(x2, loss), 1e-7, "dx2");
  // float: close to double
  std::vector<double> yf(y.size());
  mh::contraction_forward<float>(x1.data(), x2.data(), plan, yf.data(), 1);
  mhtest::expect_close(yf, ref, 1e-5, "float forward");
  // only one gradient asked for
  std::vector<double> only2(x2.size());
  mh::contraction_backward<double>(x1.data(), x2.data(), g.data(), plan, nullptr, only2.data(), 1);
  EXPECT_TRUE(mhtest::bitwise_equal(only2, d2));
}

// einsum "iij,jl->il" with x1 (3, 3, 2) (a diagonal) and x2 (2, 4): A gathers
// the diagonal (i, j), B is x2; the output is C itself. Plus an operand's
// own summed axis: "ijk,jl->il" sums k of x1 while gathering.
TEST(OpsLinalg, ContractionWithADiagonalAndASummedAxis) {
  const idx I = 3, J = 2, L = 4, K = 3;
  mh::ContractionPlan p;
  p.a.dims = {I, J};
  p.a.steps = {1 + I, I * I};
  p.a.kept = I * J;
  p.a.source_size = I * I * J;
  p.b.dims = {J, L};
  p.b.steps = {1, J};
  p.b.kept = J * L;
  p.b.source_size = J * L;
  p.rows = I;
  p.inner = J;
  p.cols = L;
  p.out_dims = {I, L};
  p.out_steps = {1, I};
  auto x1 = mhtest::random_values<double>(I * I * J, 9), x2 = mhtest::random_values<double>(J * L, 10);
  std::vector<double> y(static_cast<size_t>(I * L)), ref(y.size(), 0.0);
  mh::contraction_forward<double>(x1.data(), x2.data(), p, y.data(), 1);
  for (idx i = 0; i < I; ++i)
    for (idx l = 0; l < L; ++l)
      for (idx j = 0; j < J; ++j) ref[i + I * l] += x1[i + I * (i + I * j)] * x2[j + J * l];
  mhtest::expect_close(y, ref, 1e-12, "diagonal forward");
  const auto g = mhtest::random_values<double>(I * L, 11);
  std::vector<double> d1(x1.size(), 5.0), d2(x2.size());
  mh::contraction_backward<double>(x1.data(), x2.data(), g.data(), p, d1.data(), d2.data(), 1);
  auto loss = [&] {
    std::vector<double> out(y.size());
    mh::contraction_forward<double>(x1.data(), x2.data(), p, out.data(), 1);
    return mhtest::weighted_sum(out.data(), g);
  };
  mhtest::expect_close(d1, mhtest::numeric_gradient(x1, loss), 1e-7, "diagonal dx1 (zero off it)");
  mhtest::expect_close(d2, mhtest::numeric_gradient(x2, loss), 1e-7, "diagonal dx2");

  // "ijk,jl->il": x1 (I, J, K), k summed (gathered last)
  mh::ContractionPlan q = p;
  q.a.dims = {I, J, K};
  q.a.steps = {1, I, I * J};
  q.a.kept = I * J;
  q.a.summed = K;
  q.a.source_size = I * J * K;
  auto z1 = mhtest::random_values<double>(I * J * K, 12);
  mh::contraction_forward<double>(z1.data(), x2.data(), q, y.data(), 1);
  std::fill(ref.begin(), ref.end(), 0.0);
  for (idx i = 0; i < I; ++i)
    for (idx l = 0; l < L; ++l)
      for (idx j = 0; j < J; ++j)
        for (idx kk = 0; kk < K; ++kk) ref[i + I * l] += z1[i + I * (j + J * kk)] * x2[j + J * l];
  mhtest::expect_close(y, ref, 1e-12, "summed forward");
  std::vector<double> e1(z1.size());
  mh::contraction_backward<double>(z1.data(), x2.data(), g.data(), q, e1.data(), nullptr, 1);
  auto loss2 = [&] {
    std::vector<double> out(y.size());
    mh::contraction_forward<double>(z1.data(), x2.data(), q, out.data(), 1);
    return mhtest::weighted_sum(out.data(), g);
  };
  mhtest::expect_close(e1, mhtest::numeric_gradient(z1, loss2), 1e-7, "summed dx1");
}

TEST(OpsLinalg, GatherReduceAndItsAdjoint) {
  // "ijk->ki" on (3, 4, 5): k and i kept (in that order), j summed
  mh::GatherPlan g;
  g.dims = {5, 3, 4};
  g.steps = {12, 1, 3};
  g.kept = 15;
  g.summed = 4;
  g.source_size = 60;
  const auto x = mhtest::random_values<double>(60, 13);
  std::vector<double> out(15);
  mh::gather_reduce(x.data(), g, out.data(), 1);
  for (idx kk = 0; kk < 5; ++kk)
    for (idx i = 0; i < 3; ++i) {
      double s = 0;
      for (idx j = 0; j < 4; ++j) s += x[i + 3 * (j + 4 * kk)];
      EXPECT_NEAR(out[kk + 5 * i], s, 1e-14);
    }
  // <gather(x), y> == <x, gather^T(y)>
  const auto y = mhtest::random_values<double>(15, 14);
  std::vector<double> back(60);
  mh::gather_reduce_backward(y.data(), g, back.data(), 1);
  double lhs = 0, rhs = 0;
  for (idx i = 0; i < 15; ++i) lhs += out[i] * y[i];
  for (idx i = 0; i < 60; ++i) rhs += x[i] * back[i];
  EXPECT_NEAR(lhs, rhs, 1e-12);
  EXPECT_FALSE(g.identity());
  mh::GatherPlan id;
  id.dims = {3, 1, 20};
  id.steps = {1, 7, 3};
  id.kept = 60;
  id.source_size = 60;
  EXPECT_TRUE(id.identity());
}

TEST(OpsLinalg, BadPlansThrowInsteadOfReadingOutOfBounds) {
  mh::ContractionPlan p = batched_matmul_plan(2, 3, 4, 5);
  p.a.steps[2] = 100;  // reads past x1
  std::vector<double> x1(24), x2(40), y(30);
  EXPECT_THROW(mh::contraction_forward<double>(x1.data(), x2.data(), p, y.data(), 1), std::invalid_argument);
  p = batched_matmul_plan(2, 3, 4, 5);
  p.out_steps = {1, 1, 1};  // not a permutation of C
  EXPECT_THROW(mh::contraction_forward<double>(x1.data(), x2.data(), p, y.data(), 1), std::invalid_argument);
  p = batched_matmul_plan(2, 3, 4, 5);
  p.inner = 5;  // the stacks do not fit
  EXPECT_THROW(mh::contraction_forward<double>(x1.data(), x2.data(), p, y.data(), 1), std::invalid_argument);
  mh::DpaShape s;
  s.B = 1; s.T = 2; s.S = 2; s.N = 3; s.K = 2; s.H = 1;
  mh::DpaExtras e;
  EXPECT_THROW(mh::dpa_forward<double>(x1.data(), x1.data(), x1.data(), s, e, y.data(), 1),
               std::invalid_argument);
}

// ---- attention ----------------------------------------------------------------------

struct DpaCase {
  mh::DpaShape s;
  std::vector<double> q, k, v, bias;  // R layouts: q (B,T,N,H), k/v (B,S,K,H)
  std::vector<int32_t> mask;
  idx bias_dims[4] = {1, 1, 1, 1}, mask_dims[4] = {1, 1, 1, 1};
  bool causal = false;
  double scale = 0.5;

  mh::DpaExtras extras() const {
    mh::DpaExtras e;
    e.scale = scale;
    e.causal = causal;
    const idx full[4] = {s.B, s.N, s.T, s.S};
    auto steps = [&](const idx* d, idx* st) {
      idx stride = 1;
      for (int a = 0; a < 4; ++a) {
        st[a] = d[a] == 1 ? 0 : stride;
        stride *= d[a];
        (void)full;
      }
    };
    if (!bias.empty()) {
      e.bias = bias.data();
      steps(bias_dims, e.bias_step);
      for (int a = 0; a < 4; ++a) e.bias_dims[a] = bias_dims[a];
    }
    if (!mask.empty()) {
      e.mask = mask.data();
      steps(mask_dims, e.mask_step);
    }
    return e;
  }
};

// Keras's definition per element, in double.
std::vector<double> naive_dpa(const DpaCase& c) {
  const auto& s = c.s;
  const idx G = s.N / s.K;
  std::vector<double> out(static_cast<size_t>(s.B * s.T * s.N * s.H), 0.0), l(static_cast<size_t>(s.S));
  auto at4 = [](const idx* d, idx b, idx n, idx t, idx sk) {
    const idx i[4] = {b, n, t, sk};
    idx off = 0, stride = 1;
    for (int a = 0; a < 4; ++a) {
      off += (d[a] == 1 ? 0 : i[a]) * stride;
      stride *= d[a];
    }
    return off;
  };
  for (idx b = 0; b < s.B; ++b)
    for (idx n = 0; n < s.N; ++n)
      for (idx t = 0; t < s.T; ++t) {
        const idx kh = n / G;
        double mx = -INFINITY;
        for (idx sk = 0; sk < s.S; ++sk) {
          double z = 0;
          for (idx h = 0; h < s.H; ++h)
            z += c.q[b + s.B * (t + s.T * (n + s.N * h))] * c.k[b + s.B * (sk + s.S * (kh + s.K * h))];
          z *= c.scale;
          if (!c.bias.empty()) z += c.bias[at4(c.bias_dims, b, n, t, sk)];
          bool ok = !(c.causal && sk > t);
          if (!c.mask.empty() && c.mask[at4(c.mask_dims, b, n, t, sk)] == 0) ok = false;
          l[sk] = ok ? z : mh::kDpaMaskedLogit;
          mx = std::max(mx, l[sk]);
        }
        double sum = 0;
        for (idx sk = 0; sk < s.S; ++sk) sum += std::exp(l[sk] - mx);
        for (idx sk = 0; sk < s.S; ++sk) {
          const double p = std::exp(l[sk] - mx) / sum;
          for (idx h = 0; h < s.H; ++h)
            out[b + s.B * (t + s.T * (n + s.N * h))] += p * c.v[b + s.B * (sk + s.S * (kh + s.K * h))];
        }
      }
  return out;
}

DpaCase make_case(idx B, idx T, idx S, idx N, idx K, idx H, uint64_t seed) {
  DpaCase c;
  c.s.B = B; c.s.T = T; c.s.S = S; c.s.N = N; c.s.K = K; c.s.H = H;
  c.q = mhtest::random_values<double>(B * T * N * H, seed);
  c.k = mhtest::random_values<double>(B * S * K * H, seed + 1);
  c.v = mhtest::random_values<double>(B * S * K * H, seed + 2);
  return c;
}

TEST(OpsLinalg, DotProductAttentionMatchesLoopsAndFiniteDifferences) {
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE("variant " + std::to_string(variant));
    DpaCase c = make_case(2, 3, 4, 4, variant == 1 ? 1 : 2, 2, 20 + variant);
    if (variant >= 2) {  // bias (1, N, T, S) and a mask (B, 1, 1, S); causal in variant 3
      const idx bd[4] = {1, 4, 3, 4}, md[4] = {2, 1, 1, 4};
      std::copy(bd, bd + 4, c.bias_dims);
      std::copy(md, md + 4, c.mask_dims);
      c.bias = mhtest::random_values<double>(1 * 4 * 3 * 4, 30);
      c.mask = {1, 1, 0, 1, 1, 0, 1, 0};
      c.causal = variant == 3;
    }
    if (variant == 3) c.mask = {0, 0, 0, 0, 0, 0, 0, 0};  // every key masked: uniform
    const mh::DpaExtras e = c.extras();
    std::vector<double> out(c.q.size());
    mh::dpa_forward<double>(c.q.data(), c.k.data(), c.v.data(), c.s, e, out.data(), 1);
    mhtest::expect_close(out, naive_dpa(c), 1e-12, "forward");
    std::vector<double> outf(c.q.size());
    mh::dpa_forward<float>(c.q.data(), c.k.data(), c.v.data(), c.s, e, outf.data(), 1);
    mhtest::expect_close(outf, naive_dpa(c), 1e-5, "float forward");

    const auto g = mhtest::random_values<double>(static_cast<idx>(c.q.size()), 40);
    std::vector<double> dq(c.q.size()), dk(c.k.size()), dv(c.v.size()), db(c.bias.size());
    mh::dpa_backward<double>(c.q.data(), c.k.data(), c.v.data(), c.s, e, g.data(), dq.data(), dk.data(),
                             dv.data(), c.bias.empty() ? nullptr : db.data(), 1);
    auto loss = [&] {
      const mh::DpaExtras ee = c.extras();
      std::vector<double> o(c.q.size());
      mh::dpa_forward<double>(c.q.data(), c.k.data(), c.v.data(), c.s, ee, o.data(), 1);
      return mhtest::weighted_sum(o.data(), g);
    };
    mhtest::expect_close(dq, mhtest::numeric_gradient(c.q, loss), 1e-7, "dq");
    mhtest::expect_close(dk, mhtest::numeric_gradient(c.k, loss), 1e-7, "dk");
    mhtest::expect_close(dv, mhtest::numeric_gradient(c.v, loss), 1e-7, "dv");
    if (!c.bias.empty()) mhtest::expect_close(db, mhtest::numeric_gradient(c.bias, loss), 1e-7, "dbias");
  }
}

TEST(OpsLinalg, DotProductAttentionIsThreadInvariant) {
  DpaCase c = make_case(2, 64, 48, 4, 2, 32, 50);
  c.causal = true;
  const idx bd[4] = {2, 1, 64, 48};
  std::copy(bd, bd + 4, c.bias_dims);
  c.bias = mhtest::random_values<double>(2 * 64 * 48, 51);
  const mh::DpaExtras e = c.extras();
  const auto g = mhtest::random_values<double>(static_cast<idx>(c.q.size()), 52);
  auto run = [&](int threads, bool f64) {
    std::vector<double> out(c.q.size()), dq(c.q.size()), dk(c.k.size()), dv(c.v.size()), db(c.bias.size());
    if (f64) {
      mh::dpa_forward<double>(c.q.data(), c.k.data(), c.v.data(), c.s, e, out.data(), threads);
      mh::dpa_backward<double>(c.q.data(), c.k.data(), c.v.data(), c.s, e, g.data(), dq.data(), dk.data(),
                               dv.data(), db.data(), threads);
    } else {
      mh::dpa_forward<float>(c.q.data(), c.k.data(), c.v.data(), c.s, e, out.data(), threads);
      mh::dpa_backward<float>(c.q.data(), c.k.data(), c.v.data(), c.s, e, g.data(), dq.data(), dk.data(),
                              dv.data(), db.data(), threads);
    }
    out.insert(out.end(), dq.begin(), dq.end());
    out.insert(out.end(), dk.begin(), dk.end());
    out.insert(out.end(), dv.begin(), dv.end());
    out.insert(out.end(), db.begin(), db.end());
    return out;
  };
  for (bool f64 : {true, false}) {
    const auto one = run(1, f64), two = run(2, f64);
    EXPECT_TRUE(mhtest::bitwise_equal(one, two)) << (f64 ? "double" : "float");
  }
  std::vector<double> out(c.q.size());
  mh::dpa_forward<double>(c.q.data(), c.k.data(), c.v.data(), c.s, e, out.data(), 2);
  mhtest::expect_close(out, naive_dpa(c), 1e-12, "forward");
}

}  // namespace
