// The multi-head attention layer end to end (mha.h): forward against a naive
// composition (dense projections, per-element attention, gate, output), and
// the gradient of every input and weight, gate included, against finite
// differences in double.
#include <cmath>
#include <limits>
#include <stdexcept>

#include "mha_call.h"
#include "test_util.h"

namespace {

using mh::idx;
using mhtest::expect_close;
using mhtest::random_values;


mh::MhaDims small_dims() {
  mh::MhaDims d;
  d.B = 2; d.T = 3; d.S = 4; d.E = 4; d.Dk = 3; d.Dv = 5; d.N = 2; d.H = 3; d.Hv = 2; d.O = 4;
  return d;
}

// Inputs and weights in double (cast for float runs); empty = absent.
struct Problem {
  mh::MhaDims d;
  std::vector<double> xq, xk, xv, wq, bq, wk, bk, wg, bg, wv, bv, wo, bo;

  Problem(const mh::MhaDims& dims, bool use_bias, bool use_gate, uint64_t seed) : d(dims) {
    const idx NH = d.N * d.H, NHv = d.N * d.Hv;
    xq = random_values<double>(d.B * d.T * d.E, seed++, -2, 2);
    xk = random_values<double>(d.B * d.S * d.Dk, seed++, -2, 2);
    xv = random_values<double>(d.B * d.S * d.Dv, seed++, -2, 2);
    wq = random_values<double>(d.E * NH, seed++);
    wk = random_values<double>(d.Dk * NH, seed++);
    wv = random_values<double>(d.Dv * NHv, seed++);
    wo = random_values<double>(NHv * d.O, seed++);
    if (use_gate) wg = random_values<double>(d.E * NHv, seed++);
    if (use_bias) {
      bq = random_values<double>(NH, seed++);
      bk = random_values<double>(NH, seed++);
      bv = random_values<double>(NHv, seed++);
      bo = random_values<double>(d.O, seed++);
      if (use_gate) bg = random_values<double>(NHv, seed++);
    }
  }
};

template <class T>
const T* ptr(const std::vector<T>& x) { return x.empty() ? nullptr : x.data(); }
template <class T>
T* ptr(std::vector<T>& x) { return x.empty() ? nullptr : x.data(); }

// A Problem's values as T, with the core's views of them.
template <class T>
struct Typed {
  std::vector<T> xq, xk, xv, wq, bq, wk, bk, wg, bg, wv, bv, wo, bo;
  explicit Typed(const Problem& p)
      : xq(p.xq.begin(), p.xq.end()), xk(p.xk.begin(), p.xk.end()), xv(p.xv.begin(), p.xv.end()),
        wq(p.wq.begin(), p.wq.end()), bq(p.bq.begin(), p.bq.end()), wk(p.wk.begin(), p.wk.end()),
        bk(p.bk.begin(), p.bk.end()), wg(p.wg.begin(), p.wg.end()), bg(p.bg.begin(), p.bg.end()),
        wv(p.wv.begin(), p.wv.end()), bv(p.bv.begin(), p.bv.end()), wo(p.wo.begin(), p.wo.end()),
        bo(p.bo.begin(), p.bo.end()) {}
  mh::MhaWeights<T> weights() const {
    mh::MhaWeights<T> w;
    w.wq = ptr(wq); w.bq = ptr(bq); w.wk = ptr(wk); w.bk = ptr(bk); w.wg = ptr(wg);
    w.bg = ptr(bg); w.wv = ptr(wv); w.bv = ptr(bv); w.wo = ptr(wo); w.bo = ptr(bo);
    return w;
  }
};

// out (B, T, O) and probs (B, N, T, S) composed from naive pieces in double.
void naive_mha(const Problem& p, const mh::AttentionMask& m, const mh::DropoutSpec& drop,
               std::vector<double>* out, std::vector<double>* probs) {
  const mh::MhaDims& d = p.d;
  const idx BT = d.B * d.T, BS = d.B * d.S, NH = d.N * d.H, NHv = d.N * d.Hv;
  const auto q = mhtest::naive_dense(p.xq.data(), BT, d.E, p.wq.data(), ptr(p.bq), NH);
  const auto k = mhtest::naive_dense(p.xk.data(), BS, d.Dk, p.wk.data(), ptr(p.bk), NH);
  const auto v = mhtest::naive_dense(p.xv.data(), BS, d.Dv, p.wv.data(), ptr(p.bv), NHv);
  std::vector<double> h;
  mhtest::naive_attention(d, q.data(), k.data(), v.data(), m, drop,
                          1.0 / std::sqrt(static_cast<double>(d.H)), &h, probs);
  if (!p.wg.empty()) {
    const auto z = mhtest::naive_dense(p.xq.data(), BT, d.E, p.wg.data(), ptr(p.bg), NHv);
    for (size_t i = 0; i < h.size(); ++i) h[i] *= 1.0 / (1.0 + std::exp(-z[i]));
  }
  *out = mhtest::naive_dense(h.data(), BT, NHv, p.wo.data(), ptr(p.bo), d.O);
}

mhtest::MaskStore some_mask(const mh::MhaDims& d) {
  mhtest::MaskStore c;
  c.mask = mhtest::random_flags(d.B * d.T * d.S, 71, 0.75);
  c.mask_b = d.B;
  c.kmask.assign(static_cast<size_t>(d.B * d.S), 1);
  c.kmask[d.S - 1] = 0;
  c.causal = true;
  return c;
}

struct Config {
  bool bias, gate, masked;
  double rate;
};
const Config kConfigs[] = {{true, true, false, 0.0},  {true, true, true, 0.3},
                           {false, true, true, 0.0},  {true, false, false, 0.3},
                           {false, false, true, 0.0}};

std::string describe(const Config& c, bool flash) {
  return std::string(c.bias ? "bias" : "no bias") + (c.gate ? ", gate" : ", no gate") +
         (c.masked ? ", masked" : "") + ", dropout " + std::to_string(c.rate) +
         (flash ? ", flash" : "");
}

template <class T>
void check_forward(double tol) {
  const mh::MhaDims d = small_dims();
  for (const Config& c : kConfigs) {
    for (bool flash : mhtest::mha_kernels()) {
      SCOPED_TRACE(describe(c, flash));
      const Problem p(d, c.bias, c.gate, 80);
      const Typed<T> x(p);
      const mhtest::MaskStore ms = c.masked ? some_mask(d) : mhtest::MaskStore{};
      mh::DropoutSpec drop;
      drop.rate = c.rate;
      drop.key = mh::dropout_key(7, 3);
      std::vector<double> out_ref, probs_ref;
      naive_mha(p, ms.view(), drop, &out_ref, &probs_ref);
      std::vector<T> out(out_ref.size(), T(99));
      mh::MhaCache<T> cache;
      mhtest::run_mha_forward(d, x.xq.data(), x.xk.data(), x.xv.data(), x.weights(), ms.view(), drop, flash, 2,
                  out.data(), static_cast<T*>(nullptr), &cache);
      expect_close(out, out_ref, tol, "out");
      // Scores requested: the materialised probabilities, same output bits.
      std::vector<T> out2(out.size()), scores(probs_ref.size(), T(99));
      mhtest::run_mha_forward(d, x.xq.data(), x.xk.data(), x.xv.data(), x.weights(), ms.view(), drop, flash, 2,
                  out2.data(), scores.data(), static_cast<mh::MhaCache<T>*>(nullptr));
      expect_close(scores, probs_ref, tol, "scores");
      if (flash) {
        expect_close(out2, out_ref, tol, "out with scores");
      } else {
        EXPECT_TRUE(mhtest::bitwise_equal(out, out2));
      }
    }
  }
}

TEST(Mha, ForwardMatchesNaiveCompositionDouble) { check_forward<double>(1e-12); }
TEST(Mha, ForwardMatchesNaiveCompositionFloat) { check_forward<float>(2e-5); }

// A (B, L, F) row-major array as R stores it: column-major, row b + B * l.
std::vector<double> to_r(const std::vector<double>& x, idx B, idx L, idx F) {
  std::vector<double> r(x.size());
  for (idx b = 0; b < B; ++b)
    for (idx l = 0; l < L; ++l)
      for (idx f = 0; f < F; ++f) r[b + B * l + B * L * f] = x[(b * L + l) * F + f];
  return r;
}
std::vector<double> from_r(const std::vector<double>& r, idx B, idx L, idx F) {
  std::vector<double> x(r.size());
  for (idx b = 0; b < B; ++b)
    for (idx l = 0; l < L; ++l)
      for (idx f = 0; f < F; ++f) x[(b * L + l) * F + f] = r[b + B * l + B * L * f];
  return x;
}
// R row b + B * l -> core row b * L + l.
std::vector<idx> r_rows(idx B, idx L) {
  std::vector<idx> m(static_cast<size_t>(B * L));
  for (idx b = 0; b < B; ++b)
    for (idx l = 0; l < L; ++l) m[b + B * l] = b * L + l;
  return m;
}

// mha_forward_colmajor: inputs as R stores (B, L, F) arrays (column-major,
// row b + B * l), the output written the same way, with a two-axis output
// (O = 2 x 2: core feature o1 * 2 + o2 is R column o1 + 2 * o2).
template <class T>
void check_forward_colmajor(const mh::MhaDims& d, double tol) {
  const idx BT = d.B * d.T;
  const std::vector<idx> q_row = r_rows(d.B, d.T), kv_row = r_rows(d.B, d.S);
  const std::vector<idx> out_col = {0, 2, 1, 3};
  for (const Config& c : kConfigs) {
    SCOPED_TRACE(describe(c, true));
    const Problem p(d, c.bias, c.gate, 120);
    const Typed<T> x(p);
    const mhtest::MaskStore ms = c.masked ? some_mask(d) : mhtest::MaskStore{};
    mh::DropoutSpec drop;
    drop.rate = c.rate;
    drop.key = mh::dropout_key(5, 1);
    std::vector<double> out_ref, probs_ref;
    naive_mha(p, ms.view(), drop, &out_ref, &probs_ref);
    const std::vector<double> xq = to_r(p.xq, d.B, d.T, d.E), xk = to_r(p.xk, d.B, d.S, d.Dk),
                              xv = to_r(p.xv, d.B, d.S, d.Dv);
    std::vector<std::vector<double>> outs;
    for (int threads : {1, 2}) {
      std::vector<double> out(out_ref.size(), 99.0);
      mh::MhaColumnMajorIO io;
      io.xq = xq.data(); io.xk = xk.data(); io.xv = xv.data();
      io.q_row = q_row.data(); io.kv_row = kv_row.data();
      io.out = out.data(); io.out_col = out_col.data();
      mh::mha_forward_colmajor<T>(d, io, x.weights(), ms.view(), drop, threads);
      std::vector<double> core(out.size());  // back to the core's (B, T, O)
      for (idx r = 0; r < BT; ++r)
        for (idx o = 0; o < d.O; ++o) core[q_row[r] * d.O + o] = out[r + out_col[o] * BT];
      expect_close(core, out_ref, tol, "out");
      outs.push_back(out);
    }
    EXPECT_TRUE(mhtest::bitwise_equal(outs[0], outs[1]));  // thread count never matters
  }
}

TEST(Mha, ForwardFromColumnMajorInputsMatchesNaiveComposition) {
  mh::MhaDims big;  // several projection row blocks, several key tiles
  big.B = 3; big.T = 130; big.S = 150; big.E = 8; big.Dk = 6; big.Dv = 5;
  big.N = 2; big.H = 4; big.Hv = 3; big.O = 4;
  check_forward_colmajor<double>(small_dims(), 1e-12);
  check_forward_colmajor<float>(small_dims(), 2e-5);
  check_forward_colmajor<double>(big, 1e-12);
  check_forward_colmajor<float>(big, 5e-5);
  // heads of 16 and 32: the packed float kernel writes q and v in place
  mh::MhaDims wide;
  wide.B = 3; wide.T = 21; wide.S = 34; wide.E = 8; wide.Dk = 6; wide.Dv = 5;
  wide.N = 2; wide.H = 16; wide.Hv = 32; wide.O = 4;
  check_forward_colmajor<double>(wide, 1e-12);
  check_forward_colmajor<float>(wide, 5e-5);
}

// Expects |actual[i] - expected[i]| <= tol * (1 + max_j |expected[j]|): the
// bound for float results checked against double ones, whose errors scale
// with the sums' terms (e.g. the key bias gradient is zero in exact
// arithmetic, a float sum of 2800 O(1) terms leaves ~1e-4).
template <class A>
void expect_close_scaled(const std::vector<A>& actual, const std::vector<double>& expected,
                         double tol, const std::string& what) {
  double scale = 0;
  for (double e : expected) scale = std::max(scale, std::fabs(e));
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = static_cast<double>(actual[i]);
    if (!(std::fabs(a - expected[i]) <= tol * (1.0 + scale))) {
      ADD_FAILURE() << what << ": element " << i << " is " << a << ", expected " << expected[i]
                    << " (tolerance " << tol << " x (1 + " << scale << "))";
      return;
    }
  }
}

// mha_forward_backward_colmajor against mha_forward (flash) + mha_backward on
// the core's layout in double precision: output, input gradients (read back from R's
// layout) and weight gradients; bitwise the same on 1 and 2 threads.
template <class T>
void check_backward_colmajor(const mh::MhaDims& d, double tol) {
  const idx BT = d.B * d.T;
  const std::vector<idx> q_row = r_rows(d.B, d.T), kv_row = r_rows(d.B, d.S);
  // A two-axis output (2, O / 2): core feature o1 * O / 2 + o2 is R column o1 + 2 * o2.
  std::vector<idx> out_col(static_cast<size_t>(d.O));
  for (idx o = 0; o < d.O; ++o) out_col[o] = o / (d.O / 2) + 2 * (o % (d.O / 2));
  for (const Config& c : kConfigs) {
    SCOPED_TRACE(describe(c, true));
    const Problem p(d, c.bias, c.gate, 140);
    const Typed<T> x(p);
    const mhtest::MaskStore ms = c.masked ? some_mask(d) : mhtest::MaskStore{};
    mh::DropoutSpec drop;
    drop.rate = c.rate;
    drop.key = mh::dropout_key(9, 4);
    const std::vector<double> dout = random_values<double>(BT * d.O, 141);
    // The converted path, in double precision (float results are checked
    // against it: both float paths sum weight gradients over thousands of
    // rows in different orders, so they differ from each other by float
    // rounding, not from the double values by more than tol).
    const Typed<double> xd(p);
    std::vector<double> out_ref(dout.size());
    mh::MhaCache<double> cache;
    mhtest::run_mha_forward(d, xd.xq.data(), xd.xk.data(), xd.xv.data(), xd.weights(), ms.view(),
                            drop, true, 2, out_ref.data(), static_cast<double*>(nullptr), &cache);
    const std::vector<const std::vector<double>*> shapes = {
        &p.xq, &p.xk, &p.xv, &p.wq, &p.bq, &p.wk, &p.bk, &p.wg, &p.bg, &p.wv, &p.bv, &p.wo, &p.bo};
    auto grad_set = [&](auto& gs) {
      using U = typename std::decay_t<decltype(gs)>::value_type::value_type;
      gs.clear();
      for (const auto* v : shapes) gs.emplace_back(v->size(), U(1e30));
      mh::MhaGrads<U> gr;
      U** slots[] = {&gr.dxq, &gr.dxk, &gr.dxv, &gr.dwq, &gr.dbq, &gr.dwk, &gr.dbk,
                     &gr.dwg, &gr.dbg, &gr.dwv, &gr.dbv, &gr.dwo, &gr.dbo};
      for (size_t i = 0; i < gs.size(); ++i) *slots[i] = ptr(gs[i]);
      return gr;
    };
    std::vector<std::vector<double>> ref;
    mhtest::run_mha_backward(d, xd.xq.data(), xd.xk.data(), xd.xv.data(), xd.weights(), ms.view(),
                             drop, cache, dout.data(), grad_set(ref), 2);
    // The column-major path.
    const std::vector<double> xq = to_r(p.xq, d.B, d.T, d.E), xk = to_r(p.xk, d.B, d.S, d.Dk),
                              xv = to_r(p.xv, d.B, d.S, d.Dv);
    std::vector<double> dout_r(dout.size());
    for (idx r = 0; r < BT; ++r)
      for (idx o = 0; o < d.O; ++o) dout_r[r + out_col[o] * BT] = dout[q_row[r] * d.O + o];
    std::vector<std::vector<double>> runs;  // everything written, per thread count
    for (int threads : {1, 2}) {
      std::vector<double> out(dout.size(), 99.0), dxq(xq.size(), 99.0), dxk(xk.size(), 99.0),
          dxv(xv.size(), 99.0);
      mh::MhaColumnMajorIO io;
      io.xq = xq.data(); io.xk = xk.data(); io.xv = xv.data();
      io.q_row = q_row.data(); io.kv_row = kv_row.data();
      io.out = out.data(); io.out_col = out_col.data();
      mh::MhaColumnMajorGrads cg;
      cg.dout = dout_r.data(); cg.dxq = dxq.data(); cg.dxk = dxk.data(); cg.dxv = dxv.data();
      std::vector<std::vector<T>> gs;
      const mh::MhaGrads<T> gr = grad_set(gs);
      mh::mha_forward_backward_colmajor<T>(d, io, x.weights(), ms.view(), drop, cg, gr, threads);
      std::vector<double> core(out.size());
      for (idx r = 0; r < BT; ++r)
        for (idx o = 0; o < d.O; ++o) core[q_row[r] * d.O + o] = out[r + out_col[o] * BT];
      expect_close_scaled(core, out_ref, tol, "out");
      expect_close_scaled(from_r(dxq, d.B, d.T, d.E), ref[0], tol, "dxq");
      expect_close_scaled(from_r(dxk, d.B, d.S, d.Dk), ref[1], tol, "dxk");
      expect_close_scaled(from_r(dxv, d.B, d.S, d.Dv), ref[2], tol, "dxv");
      const char* names[] = {"wq", "bq", "wk", "bk", "wg", "bg", "wv", "bv", "wo", "bo"};
      std::vector<double> all = out;
      for (const auto* v : {&dxq, &dxk, &dxv}) all.insert(all.end(), v->begin(), v->end());
      for (size_t i = 3; i < gs.size(); ++i) {
        if (std::is_same<T, float>::value && std::string(names[i - 3]) == "bk") {
          // The key bias gradient is zero in exact arithmetic (softmax does
          // not change when every logit of a row moves by the same amount): in
          // float it is the noise of column sums over B * S rows of dk.
          expect_close(gs[i], ref[i], 1e-2, "bk (float: analytic zero)");
        } else {
          expect_close_scaled(gs[i], ref[i], tol, names[i - 3]);
        }
        all.insert(all.end(), gs[i].begin(), gs[i].end());
      }
      runs.push_back(all);
    }
    EXPECT_TRUE(mhtest::bitwise_equal(runs[0], runs[1]));  // thread count never matters

    // Input gradients not wanted (null pointers, a model's inputs in a
    // training step): nothing written there, the same output and weight
    // gradients bitwise, on both paths.
    {
      std::vector<double> out(dout.size(), 99.0);
      mh::MhaColumnMajorIO io;
      io.xq = xq.data(); io.xk = xk.data(); io.xv = xv.data();
      io.q_row = q_row.data(); io.kv_row = kv_row.data();
      io.out = out.data(); io.out_col = out_col.data();
      mh::MhaColumnMajorGrads cg;
      cg.dout = dout_r.data();
      std::vector<std::vector<T>> gs;
      const mh::MhaGrads<T> gr = grad_set(gs);
      mh::mha_forward_backward_colmajor<T>(d, io, x.weights(), ms.view(), drop, cg, gr, 2);
      std::vector<double> got = out, want(runs[1].begin(), runs[1].begin() + static_cast<long>(out.size()));
      const size_t dx_end = out.size() + xq.size() + xk.size() + xv.size();
      want.insert(want.end(), runs[1].begin() + static_cast<long>(dx_end), runs[1].end());
      for (size_t i = 3; i < gs.size(); ++i) got.insert(got.end(), gs[i].begin(), gs[i].end());
      EXPECT_TRUE(mhtest::bitwise_equal(got, want)) << "column-major path without input gradients";
    }
    {
      mh::MhaCache<double> cache2;
      std::vector<double> out2(dout.size());
      mhtest::run_mha_forward(d, xd.xq.data(), xd.xk.data(), xd.xv.data(), xd.weights(), ms.view(),
                              drop, true, 2, out2.data(), static_cast<double*>(nullptr), &cache2);
      std::vector<std::vector<double>> ref2;
      mh::MhaGrads<double> gr = grad_set(ref2);
      gr.dxq = gr.dxk = gr.dxv = nullptr;
      mhtest::run_mha_backward(d, xd.xq.data(), xd.xk.data(), xd.xv.data(), xd.weights(), ms.view(),
                               drop, cache2, dout.data(), gr, 2);
      for (size_t i = 0; i < 3; ++i) EXPECT_EQ(ref2[i][0], 1e30) << "input gradient " << i << " written";
      for (size_t i = 3; i < ref.size(); ++i) {
        EXPECT_TRUE(mhtest::bitwise_equal(ref2[i], ref[i])) << "row-major path, weight " << i;
      }
    }
  }
}

TEST(Mha, ForwardBackwardColumnMajorMatchesConvertedPath) {
  mh::MhaDims big;  // several projection row blocks (and weight-gradient groups), key tiles
  big.B = 4; big.T = 700; big.S = 300; big.E = 96; big.Dk = 40; big.Dv = 24;
  big.N = 2; big.H = 8; big.Hv = 8; big.O = 48;  // above the parallel thresholds
  check_backward_colmajor<double>(small_dims(), 1e-12);
  check_backward_colmajor<float>(small_dims(), 1e-5);
  check_backward_colmajor<double>(big, 1e-11);
  check_backward_colmajor<float>(big, 2e-5);
}

TEST(Mha, BackwardMatchesFiniteDifferencesForEveryInputAndWeight) {
  const mh::MhaDims d = small_dims();
  for (const Config& c : kConfigs) {
    for (bool flash : mhtest::mha_kernels()) {
      SCOPED_TRACE(describe(c, flash));
      Problem p(d, c.bias, c.gate, 90);
      const mhtest::MaskStore ms = c.masked ? some_mask(d) : mhtest::MaskStore{};
      const mh::AttentionMask m = ms.view();
      mh::DropoutSpec drop;
      drop.rate = c.rate;
      drop.key = mh::dropout_key(11, 2);
      const auto g = random_values<double>(d.B * d.T * d.O, 91);
      std::vector<double> out(g.size());
      auto weights = [&] {
        mh::MhaWeights<double> w;
        w.wq = ptr(p.wq); w.bq = ptr(p.bq); w.wk = ptr(p.wk); w.bk = ptr(p.bk); w.wg = ptr(p.wg);
        w.bg = ptr(p.bg); w.wv = ptr(p.wv); w.bv = ptr(p.bv); w.wo = ptr(p.wo); w.bo = ptr(p.bo);
        return w;
      };
      auto loss = [&] {
        mhtest::run_mha_forward(d, p.xq.data(), p.xk.data(), p.xv.data(), weights(), m, drop, flash, 1,
                    out.data(), static_cast<double*>(nullptr),
                    static_cast<mh::MhaCache<double>*>(nullptr));
        return mhtest::weighted_sum(out.data(), g);
      };
      mh::MhaCache<double> cache;
      mhtest::run_mha_forward(d, p.xq.data(), p.xk.data(), p.xv.data(), weights(), m, drop, flash, 2,
                  out.data(), static_cast<double*>(nullptr), &cache);
      // Gradient buffers, pre-filled with garbage: all must be overwritten.
      std::vector<std::vector<double>*> params = {&p.xq, &p.xk, &p.xv, &p.wq, &p.bq, &p.wk, &p.bk,
                                                  &p.wg, &p.bg, &p.wv, &p.bv, &p.wo, &p.bo};
      const char* names[] = {"xq", "xk", "xv", "wq", "bq", "wk", "bk",
                             "wg", "bg", "wv", "bv", "wo", "bo"};
      std::vector<std::vector<double>> grads;
      for (auto* x : params) grads.emplace_back(x->size(), 1e300);
      mh::MhaGrads<double> gr;
      double** slots[] = {&gr.dxq, &gr.dxk, &gr.dxv, &gr.dwq, &gr.dbq, &gr.dwk, &gr.dbk,
                          &gr.dwg, &gr.dbg, &gr.dwv, &gr.dbv, &gr.dwo, &gr.dbo};
      for (size_t i = 0; i < params.size(); ++i) *slots[i] = ptr(grads[i]);
      mhtest::run_mha_backward(d, p.xq.data(), p.xk.data(), p.xv.data(), weights(), m, drop, cache, g.data(),
                   gr, 2);
      for (size_t i = 0; i < params.size(); ++i) {
        if (params[i]->empty()) continue;
        expect_close(grads[i], mhtest::numeric_gradient(*params[i], loss), 1e-7, names[i]);
      }
    }
  }
}

TEST(Mha, EmptyBatchOrSequencesRunWithoutTouchingMemory) {
  for (int which = 0; which < 3; ++which) {
    mh::MhaDims d = small_dims();
    (which == 0 ? d.B : which == 1 ? d.T : d.S) = 0;
    for (bool flash : mhtest::mha_kernels()) {
      const Problem p(d, true, true, 100);
      const Typed<double> x(p);
      std::vector<double> out(static_cast<size_t>(d.B * d.T * d.O), 99);
      mh::MhaCache<double> cache;
      mhtest::run_mha_forward(d, ptr(x.xq), ptr(x.xk), ptr(x.xv), x.weights(), mh::AttentionMask{},
                  mh::DropoutSpec{}, flash, 2, ptr(out), static_cast<double*>(nullptr), &cache);
      // With no keys, the context is zero: out is the output bias.
      if (d.S == 0) {
        for (idx i = 0; i < static_cast<idx>(out.size()); ++i) EXPECT_EQ(out[i], p.bo[i % d.O]);
      }
      std::vector<double> dout(out.size(), 1.0);
      std::vector<std::vector<double>> grads = {
          std::vector<double>(x.xq.size()), std::vector<double>(x.xk.size()),
          std::vector<double>(x.xv.size()), std::vector<double>(x.wq.size()),
          std::vector<double>(x.bq.size()), std::vector<double>(x.wk.size()),
          std::vector<double>(x.bk.size()), std::vector<double>(x.wg.size()),
          std::vector<double>(x.bg.size()), std::vector<double>(x.wv.size()),
          std::vector<double>(x.bv.size()), std::vector<double>(x.wo.size()),
          std::vector<double>(x.bo.size())};
      mh::MhaGrads<double> gr;
      double** slots[] = {&gr.dxq, &gr.dxk, &gr.dxv, &gr.dwq, &gr.dbq, &gr.dwk, &gr.dbk,
                          &gr.dwg, &gr.dbg, &gr.dwv, &gr.dbv, &gr.dwo, &gr.dbo};
      for (size_t i = 0; i < grads.size(); ++i) *slots[i] = ptr(grads[i]);
      mhtest::run_mha_backward(d, ptr(x.xq), ptr(x.xk), ptr(x.xv), x.weights(), mh::AttentionMask{},
                   mh::DropoutSpec{}, cache, ptr(dout), gr, 2);
      for (size_t i = 0; i < 3; ++i)  // input gradients are all zero
        for (double v : grads[i]) EXPECT_EQ(v, 0.0);
    }
  }
}

}  // namespace

// With io.check_finite the column-major calls report NA/NaN/Inf in an input
// (query before value before key, then dout) as NonFiniteInput; without it
// they do not look. Positions: first element, inside a vector run, the tail.
template <class T>
void check_nonfinite_colmajor() {
  mh::MhaDims d;  // B*T = 3*37 = 111 rows: 13 vectors of 8 and a tail of 7
  d.B = 3; d.T = 37; d.S = 29; d.E = 8; d.Dk = 6; d.Dv = 5; d.N = 2; d.H = 4; d.Hv = 3; d.O = 4;
  const Problem p(d, true, true, 150);
  const Typed<T> x(p);
  const std::vector<idx> q_row = r_rows(d.B, d.T), kv_row = r_rows(d.B, d.S);
  const std::vector<double> xq0 = to_r(p.xq, d.B, d.T, d.E), xk0 = to_r(p.xk, d.B, d.S, d.Dk),
                            xv0 = to_r(p.xv, d.B, d.S, d.Dv);
  const std::vector<double> dout0(static_cast<size_t>(d.B * d.T * d.O), 0.5);
  const double bad_values[] = {std::numeric_limits<double>::quiet_NaN(),
                               std::numeric_limits<double>::infinity(),
                               -std::numeric_limits<double>::infinity()};
  using In = mh::NonFiniteInput;
  for (int which = 0; which < 4; ++which) {
    for (double bad : bad_values) {
      for (idx pos : {idx(0), idx(9), idx(110)}) {
        std::vector<double> xq = xq0, xk = xk0, xv = xv0, dout = dout0;
        std::vector<double>& target = which == 0 ? xq : which == 1 ? xv : which == 2 ? xk : dout;
        target[static_cast<size_t>(pos % static_cast<idx>(target.size()))] = bad;
        std::vector<double> out(dout.size()), dxq(xq.size()), dxk(xk.size()), dxv(xv.size());
        mh::MhaColumnMajorIO io;
        io.xq = xq.data(); io.xk = xk.data(); io.xv = xv.data();
        io.q_row = q_row.data(); io.kv_row = kv_row.data(); io.out = out.data();
        mh::MhaColumnMajorGrads cg;
        cg.dout = dout.data(); cg.dxq = dxq.data(); cg.dxk = dxk.data(); cg.dxv = dxv.data();
        std::vector<std::vector<T>> gs;
        mh::MhaGrads<T> gr;
        T** slots[] = {&gr.dwq, &gr.dbq, &gr.dwk, &gr.dbk, &gr.dwg, &gr.dbg, &gr.dwv, &gr.dbv,
                       &gr.dwo, &gr.dbo};
        const std::vector<const std::vector<double>*> shapes = {
            &p.wq, &p.bq, &p.wk, &p.bk, &p.wg, &p.bg, &p.wv, &p.bv, &p.wo, &p.bo};
        for (size_t i = 0; i < shapes.size(); ++i) gs.emplace_back(shapes[i]->size());
        for (size_t i = 0; i < shapes.size(); ++i) *slots[i] = gs[i].data();
        SCOPED_TRACE("input " + std::to_string(which) + " value " + std::to_string(bad) +
                     " at " + std::to_string(pos));
        io.check_finite = false;  // not asked: no NonFiniteInput (a NaN or Inf
                                  // input may still give NaN logits: LogitOverflow)
        auto unchecked = [&](auto&& call) {
          try {
            call();
          } catch (const In&) {
            ADD_FAILURE() << "NonFiniteInput without check_finite";
          } catch (const mh::LogitOverflow&) {
          }
        };
        unchecked([&] {
          mh::mha_forward_colmajor<T>(d, io, x.weights(), mh::AttentionMask{}, mh::DropoutSpec{}, 2);
        });
        unchecked([&] {
          mh::mha_forward_backward_colmajor<T>(d, io, x.weights(), mh::AttentionMask{},
                                               mh::DropoutSpec{}, cg, gr, 2);
        });
        io.check_finite = true;
        for (int threads : {1, 2}) {
          for (bool backward : {false, true}) {
            if (which == 3 && !backward) {
              EXPECT_NO_THROW(mh::mha_forward_colmajor<T>(d, io, x.weights(), mh::AttentionMask{},
                                                          mh::DropoutSpec{}, threads));
              continue;
            }
            try {
              if (backward) {
                mh::mha_forward_backward_colmajor<T>(d, io, x.weights(), mh::AttentionMask{},
                                                     mh::DropoutSpec{}, cg, gr, threads);
              } else {
                mh::mha_forward_colmajor<T>(d, io, x.weights(), mh::AttentionMask{},
                                            mh::DropoutSpec{}, threads);
              }
              ADD_FAILURE() << "no NonFiniteInput";
            } catch (const In& e) {
              const In::Input want[] = {In::kQuery, In::kValue, In::kKey, In::kOutputGradient};
              EXPECT_EQ(e.input, want[which]);
            }
          }
        }
      }
    }
  }
  // Several bad inputs: the first in the order query, value, key wins.
  std::vector<double> xq = xq0, xk = xk0, xv = xv0, out(static_cast<size_t>(d.B * d.T * d.O));
  xk[3] = std::numeric_limits<double>::quiet_NaN();
  xv[100] = std::numeric_limits<double>::infinity();
  mh::MhaColumnMajorIO io;
  io.check_finite = true;
  io.xq = xq.data(); io.xk = xk.data(); io.xv = xv.data();
  io.q_row = q_row.data(); io.kv_row = kv_row.data(); io.out = out.data();
  try {
    mh::mha_forward_colmajor<T>(d, io, x.weights(), mh::AttentionMask{}, mh::DropoutSpec{}, 2);
    ADD_FAILURE() << "no NonFiniteInput";
  } catch (const In& e) {
    EXPECT_EQ(e.input, In::kValue);
  }
}

TEST(Mha, ColumnMajorCallsReportNonFiniteInputs) {
  check_nonfinite_colmajor<float>();
  check_nonfinite_colmajor<double>();
}
