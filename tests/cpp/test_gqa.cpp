// Grouped key/value heads (MhaDims::Nkv) on every path of one call
// (mha_choose_path, mha_forward_path, mha_backward_path): against multi-head
// attention with each key/value head repeated for its group of query heads
// (Keras's definition), whose key/value weight gradients are then the sums
// over the group; and bitwise the same for any thread count.
#include <cmath>
#include <vector>

#include "dropout_rng.h"
#include "mha.h"
#include "test_util.h"

namespace {

using mh::idx;
using mhtest::random_values;

struct Case {
  mh::MhaDims d;  // grouped: d.Nkv key/value heads
  std::vector<double> xq, xk, xv, wq, bq, wk, bk, wg, bg, wv, bv, wo, bo, dout;
};

Case make_case(idx B, idx T, idx S, idx N, idx Nkv, bool gate, uint64_t seed) {
  Case c;
  mh::MhaDims& d = c.d;
  d.B = B; d.T = T; d.S = S; d.E = 5; d.Dk = 4; d.Dv = 3; d.N = N; d.H = 3; d.Hv = 3; d.O = 5;
  d.Nkv = Nkv;
  c.xq = random_values<double>(B * T * d.E, seed++, -2, 2);
  c.xk = random_values<double>(B * S * d.Dk, seed++, -2, 2);
  c.xv = random_values<double>(B * S * d.Dv, seed++, -2, 2);
  c.wq = random_values<double>(d.E * N * d.H, seed++);
  c.bq = random_values<double>(N * d.H, seed++);
  c.wk = random_values<double>(d.Dk * Nkv * d.H, seed++);
  c.bk = random_values<double>(Nkv * d.H, seed++);
  c.wv = random_values<double>(d.Dv * Nkv * d.Hv, seed++);
  c.bv = random_values<double>(Nkv * d.Hv, seed++);
  if (gate) {
    c.wg = random_values<double>(d.E * N * d.Hv, seed++);
    c.bg = random_values<double>(N * d.Hv, seed++);
  }
  c.wo = random_values<double>(N * d.Hv * d.O, seed++);
  c.bo = random_values<double>(d.O, seed++);
  c.dout = random_values<double>(B * T * d.O, seed++);
  return c;
}

// w (in, Nkv * W) with each head repeated R times: (in, Nkv * R * W).
std::vector<double> repeat_heads(const std::vector<double>& w, idx in, idx Nkv, idx W, idx R) {
  std::vector<double> out(static_cast<size_t>(in * Nkv * R * W));
  for (idx f = 0; f < in; ++f)
    for (idx g = 0; g < Nkv; ++g)
      for (idx r = 0; r < R; ++r)
        for (idx j = 0; j < W; ++j)
          out[(f * Nkv * R + g * R + r) * W + j] = w[(f * Nkv + g) * W + j];
  return out;
}

// The inverse's adjoint: sums the R copies of each head.
std::vector<double> sum_heads(const std::vector<double>& w, idx in, idx Nkv, idx W, idx R) {
  std::vector<double> out(static_cast<size_t>(in * Nkv * W), 0.0);
  for (idx f = 0; f < in; ++f)
    for (idx g = 0; g < Nkv; ++g)
      for (idx r = 0; r < R; ++r)
        for (idx j = 0; j < W; ++j)
          out[(f * Nkv + g) * W + j] += w[(f * Nkv * R + g * R + r) * W + j];
  return out;
}

const double* ptr(const std::vector<double>& x) { return x.empty() ? nullptr : x.data(); }

struct Result {
  std::vector<double> out, dxq, dxk, dxv, dwq, dbq, dwk, dbk, dwg, dbg, dwv, dbv, dwo, dbo;
};

// Forward + backward of `c` on `path` (the in-place path reads the inputs as
// column-major (rows, features) matrices with the core's row order).
Result run(const Case& c, mh::MhaPath path, const mh::AttentionMask& mask,
           const mh::DropoutSpec& drop, int threads) {
  const mh::MhaDims& d = c.d;
  const idx BT = d.B * d.T, BS = d.B * d.S;
  Result r;
  mh::MhaCall<double> call;
  call.d = d;
  call.mask = mask;
  call.drop = drop;
  call.threads = threads;
  mh::MhaWeights<double>& w = call.w;
  w.wq = ptr(c.wq); w.bq = ptr(c.bq); w.wk = ptr(c.wk); w.bk = ptr(c.bk); w.wg = ptr(c.wg);
  w.bg = ptr(c.bg); w.wv = ptr(c.wv); w.bv = ptr(c.bv); w.wo = ptr(c.wo); w.bo = ptr(c.bo);
  r.out.resize(static_cast<size_t>(BT * d.O));
  r.dxq.resize(c.xq.size()); r.dxk.resize(c.xk.size()); r.dxv.resize(c.xv.size());
  r.dwq.resize(c.wq.size()); r.dbq.resize(c.bq.size()); r.dwk.resize(c.wk.size());
  r.dbk.resize(c.bk.size()); r.dwg.resize(c.wg.size()); r.dbg.resize(c.bg.size());
  r.dwv.resize(c.wv.size()); r.dbv.resize(c.bv.size()); r.dwo.resize(c.wo.size());
  r.dbo.resize(c.bo.size());
  auto col_major = [](const std::vector<double>& x, idx rows, idx cols) {
    std::vector<double> y(x.size());
    for (idx i = 0; i < rows; ++i)
      for (idx j = 0; j < cols; ++j) y[i + j * rows] = x[i * cols + j];
    return y;
  };
  const std::vector<double> cq = col_major(c.xq, BT, d.E), ck = col_major(c.xk, BS, d.Dk),
                            cv = col_major(c.xv, BS, d.Dv), cdout = col_major(c.dout, BT, d.O);
  std::vector<idx> q_row(static_cast<size_t>(BT)), kv_row(static_cast<size_t>(BS));
  for (idx i = 0; i < BT; ++i) q_row[i] = i;
  for (idx i = 0; i < BS; ++i) kv_row[i] = i;
  std::vector<double> cout(r.out.size()), cdxq(c.xq.size()), cdxk(c.xk.size()), cdxv(c.xv.size());
  mh::MhaBackwardIO<double> bio;
  mh::MhaGrads<double>& g = bio.g;
  auto p = [](std::vector<double>& x) { return x.empty() ? nullptr : x.data(); };
  g.dwq = p(r.dwq); g.dbq = p(r.dbq); g.dwk = p(r.dwk); g.dbk = p(r.dbk); g.dwg = p(r.dwg);
  g.dbg = p(r.dbg); g.dwv = p(r.dwv); g.dbv = p(r.dbv); g.dwo = p(r.dwo); g.dbo = p(r.dbo);
  if (path == mh::MhaPath::kFlashInPlace) {
    call.io.xq = cq.data(); call.io.xk = ck.data(); call.io.xv = cv.data();
    call.io.q_row = q_row.data(); call.io.kv_row = kv_row.data(); call.io.out = cout.data();
    bio.cg.dout = cdout.data(); bio.cg.dxq = cdxq.data(); bio.cg.dxk = cdxk.data();
    bio.cg.dxv = cdxv.data();
  } else {
    call.xq = c.xq.data(); call.xk = c.xk.data(); call.xv = c.xv.data(); call.out = r.out.data();
    bio.dout = c.dout.data();
    g.dxq = r.dxq.data(); g.dxk = r.dxk.data(); g.dxv = r.dxv.data();
  }
  mh::MhaCache<double> cache;
  mh::mha_forward_path(mh::MhaPath(path), call, &cache);
  mh::mha_backward_path(call, cache, bio);
  if (path == mh::MhaPath::kFlashInPlace) {  // back to row-major
    auto row_major = [](const std::vector<double>& x, idx rows, idx cols) {
      std::vector<double> y(x.size());
      for (idx i = 0; i < rows; ++i)
        for (idx j = 0; j < cols; ++j) y[i * cols + j] = x[i + j * rows];
      return y;
    };
    r.out = row_major(cout, BT, d.O);
    r.dxq = row_major(cdxq, BT, d.E);
    r.dxk = row_major(cdxk, BS, d.Dk);
    r.dxv = row_major(cdxv, BS, d.Dv);
  }
  return r;
}

double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0, s = 1e-300;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    m = std::max(m, std::abs(a[i] - b[i]));
    s = std::max(s, std::abs(b[i]));
  }
  return m / s;
}

const mh::MhaPath kPaths[] = {mh::MhaPath::kFlashInPlace, mh::MhaPath::kFlashConverted,
                              mh::MhaPath::kMaterialised};

TEST(GroupedQueryAttention, EqualsMultiHeadWithRepeatedKeyValueHeadsOnEveryPath) {
  for (idx Nkv : {1, 2, 4}) {
    for (bool gate : {false, true}) {
      // T and S cross the flash kernel's query and key tiles
      const Case g = make_case(2, 70, 140, 4, Nkv, gate, 300 + Nkv);
      const idx R = g.d.N / Nkv;
      Case m = g;  // multi-head: key/value heads repeated
      m.d.Nkv = 0;
      m.wk = repeat_heads(g.wk, g.d.Dk, Nkv, g.d.H, R);
      m.bk = repeat_heads(g.bk, 1, Nkv, g.d.H, R);
      m.wv = repeat_heads(g.wv, g.d.Dv, Nkv, g.d.Hv, R);
      m.bv = repeat_heads(g.bv, 1, Nkv, g.d.Hv, R);
      mh::AttentionMask mask;
      mask.causal = true;
      mh::DropoutSpec drop;
      drop.rate = 0.2;
      drop.key = mh::dropout_key(7, 3);
      for (mh::MhaPath path : kPaths) {
        SCOPED_TRACE("Nkv " + std::to_string(Nkv) + (gate ? ", gate" : "") + ", path " +
                     std::to_string(static_cast<int>(path)));
        const Result a = run(g, path, mask, drop, 2), b = run(m, path, mask, drop, 2);
        EXPECT_LT(max_rel(a.out, b.out), 1e-12);
        EXPECT_LT(max_rel(a.dxq, b.dxq), 1e-12);
        EXPECT_LT(max_rel(a.dxk, b.dxk), 1e-12);
        EXPECT_LT(max_rel(a.dxv, b.dxv), 1e-12);
        EXPECT_LT(max_rel(a.dwq, b.dwq), 1e-12);
        EXPECT_LT(max_rel(a.dwk, sum_heads(b.dwk, g.d.Dk, Nkv, g.d.H, R)), 1e-12);
        EXPECT_LT(max_rel(a.dwv, sum_heads(b.dwv, g.d.Dv, Nkv, g.d.Hv, R)), 1e-12);
        EXPECT_LT(max_rel(a.dbv, sum_heads(b.dbv, 1, Nkv, g.d.Hv, R)), 1e-12);
        EXPECT_LT(max_rel(a.dwo, b.dwo), 1e-12);
        if (gate) {
          EXPECT_LT(max_rel(a.dwg, b.dwg), 1e-12);
        }
      }
    }
  }
}

TEST(GroupedQueryAttention, BitwiseTheSameForAnyThreadCount) {
  const Case g = make_case(1, 300, 260, 8, 2, true, 400);
  mh::AttentionMask mask;
  mask.window = 90;
  for (mh::MhaPath path : kPaths) {
    const Result a = run(g, path, mask, mh::DropoutSpec{}, 1);
    for (int threads : {2, 3, 4}) {
      const Result b = run(g, path, mask, mh::DropoutSpec{}, threads);
      EXPECT_EQ(a.out, b.out);
      EXPECT_EQ(a.dxq, b.dxq);
      EXPECT_EQ(a.dxk, b.dxk);
      EXPECT_EQ(a.dxv, b.dxv);
      EXPECT_EQ(a.dwk, b.dwk);
      EXPECT_EQ(a.dwv, b.dwv);
      EXPECT_EQ(a.dwq, b.dwq);
    }
  }
}

TEST(GroupedQueryAttention, RejectsHeadCountsThatDoNotDivide) {
  Case g = make_case(1, 4, 4, 4, 2, false, 500);
  g.d.Nkv = 3;
  EXPECT_THROW(run(g, mh::MhaPath::kMaterialised, mh::AttentionMask{}, mh::DropoutSpec{}, 1),
               std::invalid_argument);
}

TEST(MhaChoosePath, StatesTheDecision) {
  mh::MhaCallFacts f;
  EXPECT_EQ(mh::mha_choose_path(f), mh::MhaPath::kMaterialised);
  f.flash = true;
  EXPECT_EQ(mh::mha_choose_path(f), mh::MhaPath::kFlashConverted);
  f.in_place_io = true;
  EXPECT_EQ(mh::mha_choose_path(f), mh::MhaPath::kFlashInPlace);
  f.scores = true;
  EXPECT_EQ(mh::mha_choose_path(f), mh::MhaPath::kMaterialised);
  f.flash = false;
  f.scores = false;
  EXPECT_EQ(mh::mha_choose_path(f), mh::MhaPath::kMaterialised);
}

}  // namespace
