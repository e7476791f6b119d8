// Reductions, softmax-family and cumulative ops: see ops_reduce.h for the
// layout (R's column-major arrays read in place) and the definitions.
//
// Two drivers do all the work:
//   reduce_states()  one accumulator state per output, over tasks that are
//                    (block of outputs) x (block of inner positions) x
//                    (block of the reduced range); with several reduced
//                    blocks, each writes partial states that are merged in
//                    block order afterwards;
//   map_elements()   f(pos, out) for every element of x in memory order
//                    (out = its output index), over fixed blocks of elements.
// Task sizes are functions of the plan only, so the order of every floating
// point operation is the same for any thread count.
#include "ops_reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "parallel.h"

namespace mh {

namespace {

constexpr idx kTask = idx(1) << 15;       // elements per task (about)
constexpr idx kInnerBlock = 1024;         // inner positions per task
constexpr int kMaxRuns = 64;              // > any possible number of runs (2^52 elements)
constexpr double kInf = std::numeric_limits<double>::infinity();

idx ceil_div(idx a, idx b) { return (a + b - 1) / b; }

int threads_for(idx n, int threads) { return threads_for_elements(static_cast<double>(n), threads); }

template <class In>
bool is_nan(In v) {
  return std::isnan(static_cast<double>(v));
}

// A multi-index over runs (fastest first) and the offset it gives with the
// runs' strides.
struct Odometer {
  const idx* dim;
  const idx* stride;
  int k;
  idx cnt[kMaxRuns];
  idx off = 0;

  Odometer(const std::vector<idx>& d, const std::vector<idx>& s)
      : dim(d.data()), stride(s.data()), k(static_cast<int>(d.size())) {}

  void seek(idx lin) {
    off = 0;
    for (int j = 0; j < k; ++j) {
      cnt[j] = lin % dim[j];
      lin /= dim[j];
      off += cnt[j] * stride[j];
    }
  }
  // `len` steps along the fastest run (len <= dim[0] - cnt[0]), with carries.
  void advance(idx len) {
    cnt[0] += len;
    off += len * stride[0];
    for (int j = 0; j < k && cnt[j] == dim[j]; ++j) {
      off -= dim[j] * stride[j];
      cnt[j] = 0;
      if (j + 1 < k) {
        ++cnt[j + 1];
        off += stride[j + 1];
      }
    }
  }
};

// ---- the reduction driver ------------------------------------------------------

// Acc: State init(); add(State&, pos, out, r) for the element at x offset pos,
// output out, reduced index r (called in increasing r for one state);
// merge(State& a, const State& b) combines two states of disjoint sets of
// elements (the result must not depend on which holds the earlier elements
// beyond floating point rounding: lanes interleave them).
template <class Acc>
void reduce_states(const ReducePlan& p, const Acc& acc, typename Acc::State* res, int threads) {
  using State = typename Acc::State;
  const idx outputs = p.outputs();
  if (outputs == 0) return;
  if (p.n == 0) {
    std::fill(res, res + outputs, acc.init());
    return;
  }
  const idx ib = std::min(p.inner, kInnerBlock);
  const idx nib = ceil_div(p.inner, ib);
  idx rb = std::max<idx>(1, kTask / ib);
  if (rb > p.reduced) rb = p.reduced;
  const idx nrb = ceil_div(p.reduced, rb);
  const idx ob = std::max<idx>(1, kTask / (ib * rb));
  const idx nob = ceil_div(p.outer, ob);
  const int used = threads_for(p.n, threads);
  Buffer<State> part;
  if (nrb > 1) part.resize(static_cast<size_t>(checked_count({nrb, outputs}, "partial reductions")));
  State* dst = nrb > 1 ? part.data() : res;

  parallel_for(static_cast<long>(nob * nib * nrb), used, [&](long t) {
    const idx rbi = t % nrb, rest = t / nrb;
    const idx ibi = rest % nib, obi = rest / nib;
    const idx r0 = rbi * rb, r1 = std::min(p.reduced, r0 + rb);
    const idx i0 = ibi * ib, i1 = std::min(p.inner, i0 + ib);
    const idx o0 = obi * ob, o1 = std::min(p.outer, o0 + ob);
    State* d = dst + rbi * outputs;
    Odometer O(p.odim, p.ostride);
    Odometer R(p.rdim, p.rstride);
    O.seek(o0);
    if (p.inner > 1) {
      // Vectors of inner positions: x[xo(o) + xr(r) + i], i in [i0, i1).
      Buffer<State> s(static_cast<size_t>(i1 - i0));
      for (idx o = o0; o < o1; ++o) {
        std::fill(s.begin(), s.end(), acc.init());
        R.seek(r0);
        const idx ob0 = o * p.inner;
        for (idx r = r0; r < r1; ++r) {
          const idx b = O.off + R.off;
          for (idx i = i0; i < i1; ++i) acc.add(s[i - i0], b + i, ob0 + i, r);
          R.advance(1);
        }
        for (idx i = i0; i < i1; ++i) d[ob0 + i] = s[i - i0];
        O.advance(1);
      }
    } else {
      // One output at a time; the fastest reduced run is contiguous. Four
      // interleaved lanes (independent dependency chains) merged in a fixed
      // order at the end.
      for (idx o = o0; o < o1; ++o) {
        State s0 = acc.init(), s1 = acc.init(), s2 = acc.init(), s3 = acc.init();
        R.seek(r0);
        idx r = r0;
        while (r < r1) {
          const idx len = std::min(p.rdim[0] - R.cnt[0], r1 - r);
          const idx b = O.off + R.off;
          idx j = 0;
          for (; j + 4 <= len; j += 4) {
            acc.add(s0, b + j, o, r + j);
            acc.add(s1, b + j + 1, o, r + j + 1);
            acc.add(s2, b + j + 2, o, r + j + 2);
            acc.add(s3, b + j + 3, o, r + j + 3);
          }
          for (; j < len; ++j) acc.add(s0, b + j, o, r + j);
          r += len;
          R.advance(len);
        }
        acc.merge(s0, s1);
        acc.merge(s2, s3);
        acc.merge(s0, s2);
        d[o] = s0;
        O.advance(1);
      }
    }
  });

  if (nrb > 1) {
    parallel_for(static_cast<long>(ceil_div(outputs, kTask)), threads_for(nrb * outputs, threads),
                 [&](long blk) {
                   const idx a0 = blk * kTask, a1 = std::min(outputs, a0 + kTask);
                   for (idx a = a0; a < a1; ++a) {
                     State s = part[a];
                     for (idx b = 1; b < nrb; ++b) acc.merge(s, part[b * outputs + a]);
                     res[a] = s;
                   }
                 });
  }
}

// f(pos, out) for every element of x, over fixed blocks in memory order.
template <class F>
void map_elements(const ReducePlan& p, int threads, F f) {
  if (p.n == 0) return;
  parallel_for(static_cast<long>(ceil_div(p.n, kTask)), threads_for(p.n, threads), [&](long blk) {
    const idx p0 = blk * kTask, p1 = std::min(p.n, p0 + kTask);
    Odometer A(p.dim, p.outstride);
    A.seek(p0);
    const bool kept_first = p.outstride[0] != 0;
    idx pos = p0;
    while (pos < p1) {
      const idx len = std::min(p.dim[0] - A.cnt[0], p1 - pos);
      const idx out = A.off;
      if (kept_first) {
        for (idx j = 0; j < len; ++j) f(pos + j, out + j);
      } else {
        for (idx j = 0; j < len; ++j) f(pos + j, out);
      }
      pos += len;
      A.advance(len);
    }
  });
}

// ---- accumulators ------------------------------------------------------------------

template <class In>
struct SumAcc {
  const In* x;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx, idx) const { s += static_cast<double>(x[pos]); }
  void merge(State& a, const State& b) const { a += b; }
};

template <class In>
struct ProdAcc {
  const In* x;
  using State = double;
  State init() const { return 1.0; }
  void add(State& s, idx pos, idx, idx) const { s *= static_cast<double>(x[pos]); }
  void merge(State& a, const State& b) const { a *= b; }
};

// max (sign = 1) or min (sign = -1) of sign-adjusted values; NaN wins.
template <class In, bool Max, bool Abs>
struct ExtremeAcc {
  const In* x;
  using State = double;
  static bool better(double v, double s) { return Max ? (v > s) : (v < s); }
  State init() const { return Max ? -kInf : kInf; }
  void add(State& s, idx pos, idx, idx) const {
    double v = static_cast<double>(x[pos]);
    if (Abs) v = std::fabs(v);
    const double t = better(v, s) ? v : s;  // branch-free selects
    s = v != v ? v : t;
  }
  void merge(State& a, const State& b) const {
    if (better(b, a) || std::isnan(b)) a = b;
  }
};

template <class In, bool Any>
struct LogicalAcc {
  const In* x;
  using State = double;
  State init() const { return Any ? 0.0 : 1.0; }
  void add(State& s, idx pos, idx, idx) const {
    const bool nz = x[pos] != In(0);
    if (Any) {
      if (nz) s = 1.0;
    } else {
      if (!nz) s = 0.0;
    }
  }
  void merge(State& a, const State& b) const { a = Any ? std::max(a, b) : std::min(a, b); }
};

template <class In>
struct CountAcc {
  const In* x;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx, idx) const { s += x[pos] != In(0) ? 1.0 : 0.0; }
  void merge(State& a, const State& b) const { a += b; }
};

// sum((x - shift[out])^2)
template <class In>
struct SquaredDevAcc {
  const In* x;
  const double* shift;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx out, idx) const {
    const double d = static_cast<double>(x[pos]) - shift[out];
    s += d * d;
  }
  void merge(State& a, const State& b) const { a += b; }
};

// sum((x / scale[out])^2), or sum(x^2) without scale
template <class In>
struct SumSquaresAcc {
  const In* x;
  const double* scale;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx out, idx) const {
    const double v = scale ? static_cast<double>(x[pos]) / scale[out] : static_cast<double>(x[pos]);
    s += v * v;
  }
  void merge(State& a, const State& b) const { a += b; }
};

struct Norm2State {
  double s;  // sum of squares
  double m;  // max |x| (NaN propagates)
};

template <class In>
struct Norm2Acc {
  const In* x;
  using State = Norm2State;
  State init() const { return Norm2State{0.0, 0.0}; }
  void add(State& st, idx pos, idx, idx) const {
    const double v = static_cast<double>(x[pos]), a = std::fabs(v);
    st.s += v * v;
    if (a > st.m || std::isnan(a)) st.m = a;
  }
  void merge(State& a, const State& b) const {
    a.s += b.s;
    if (b.m > a.m || std::isnan(b.m)) a.m = b.m;
  }
};

// sum(exp(x - shift[out])), storing each exp in y (each element is added
// exactly once, so every y is written once)
struct ExpStoreAcc {
  const double* x;
  const double* shift;
  double* y;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx out, idx) const {
    const double e = std::exp(x[pos] - shift[out]);
    y[pos] = e;
    s += e;
  }
  void merge(State& a, const State& b) const { a += b; }
};

// sum(exp(x - shift[out]))
template <class In>
struct ExpSumAcc {
  const In* x;
  const double* shift;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx out, idx) const {
    s += std::exp(static_cast<double>(x[pos]) - shift[out]);
  }
  void merge(State& a, const State& b) const { a += b; }
};

template <class In>
struct AbsSumAcc {
  const In* x;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx, idx) const { s += std::fabs(static_cast<double>(x[pos])); }
  void merge(State& a, const State& b) const { a += b; }
};

template <class In>
struct PowAbsAcc {
  const In* x;
  double p;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx, idx) const { s += std::pow(std::fabs(static_cast<double>(x[pos])), p); }
  void merge(State& a, const State& b) const { a += b; }
};

struct ArgState {
  double v;
  idx k;  // -1: none yet
};

// First position of the maximum (Max) or minimum; the first NaN wins.
template <class In, bool Max>
struct ArgAcc {
  const In* x;
  using State = ArgState;
  static bool better(double v, double s) {
    return (Max ? (v > s) : (v < s)) || (std::isnan(v) && !std::isnan(s));
  }
  State init() const { return ArgState{0.0, -1}; }
  void add(State& s, idx pos, idx, idx r) const {
    const double v = static_cast<double>(x[pos]);
    if (s.k < 0 || better(v, s.v)) s = ArgState{v, r};
  }
  // Order-free: on equal values (or two NaNs) the smaller position wins.
  void merge(State& a, const State& b) const {
    if (b.k < 0) return;
    if (a.k < 0 || better(b.v, a.v) || (!better(a.v, b.v) && b.k < a.k)) a = b;
  }
};

// sum(a * b)
struct DotAcc {
  const double* a;
  const double* b;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx, idx) const { s += a[pos] * b[pos]; }
  void merge(State& u, const State& v) const { u += v; }
};

// How many elements equal the output (ties of a max/min): |x| with Abs.
template <bool Abs>
struct TieAcc {
  const double* x;
  const double* out;
  using State = double;
  State init() const { return 0.0; }
  void add(State& s, idx pos, idx o, idx) const {
    const double v = Abs ? std::fabs(x[pos]) : x[pos];
    if (v == out[o]) s += 1.0;
  }
  void merge(State& a, const State& b) const { a += b; }
};

struct ZeroProdState {
  double zeros;
  double prod;  // product of the nonzero elements
};

struct ZeroProdAcc {
  const double* x;
  using State = ZeroProdState;
  State init() const { return ZeroProdState{0.0, 1.0}; }
  void add(State& s, idx pos, idx, idx) const {
    if (x[pos] == 0.0) {
      s.zeros += 1.0;
    } else {
      s.prod *= x[pos];
    }
  }
  void merge(State& a, const State& b) const {
    a.zeros += b.zeros;
    a.prod *= b.prod;
  }
};

double sign_of(double v) { return v > 0 ? 1.0 : (v < 0 ? -1.0 : (std::isnan(v) ? v : 0.0)); }

// ---- forward pieces ------------------------------------------------------------------

template <class In>
void mean_of(const In* x, const ReducePlan& p, double* out, int threads) {
  reduce_states(p, SumAcc<In>{x}, out, threads);
  const double n = static_cast<double>(p.reduced);
  for (idx a = 0; a < p.outputs(); ++a) out[a] /= n;
}

// sqrt(sum(x^2)). The sum of squares is accumulated with max|x|; a group
// whose sum overflowed, or may have lost precision to underflow, is summed
// again scaled by its max|x|: sqrt(sum((x / m)^2)) * m.
template <class In>
void norm2_of(const In* x, const ReducePlan& p, double* out, int threads) {
  const idx outputs = p.outputs();
  Buffer<Norm2State> st(static_cast<size_t>(outputs));
  reduce_states(p, Norm2Acc<In>{x}, st.data(), threads);
  auto needs_scaling = [](const Norm2State& s) {
    return std::isfinite(s.m) && s.m > 0.0 && (s.s == kInf || s.s < 1e-290);
  };
  bool rescale = false;
  for (idx a = 0; a < outputs; ++a) {
    rescale = rescale || needs_scaling(st[a]);
    out[a] = std::sqrt(st[a].s);
  }
  if (!rescale) return;
  Buffer<double> scale(static_cast<size_t>(outputs)), s(static_cast<size_t>(outputs));
  for (idx a = 0; a < outputs; ++a) scale[a] = needs_scaling(st[a]) ? st[a].m : 1.0;
  reduce_states(p, SumSquaresAcc<In>{x, scale.data()}, s.data(), threads);
  for (idx a = 0; a < outputs; ++a) {
    if (needs_scaling(st[a])) out[a] = std::sqrt(s[a]) * st[a].m;
  }
}

template <class In, bool Max>
void arg_of(const In* x, const ReducePlan& p, double* out, int threads) {
  Buffer<ArgState> s(static_cast<size_t>(p.outputs()));
  reduce_states(p, ArgAcc<In, Max>{x}, s.data(), threads);
  for (idx a = 0; a < p.outputs(); ++a) out[a] = static_cast<double>(std::max<idx>(s[a].k, 0));
}

}  // namespace

// ---- the plan ------------------------------------------------------------------------

ReducePlan make_reduce_plan(const std::vector<idx>& dims, const std::vector<int>& reduced) {
  if (dims.size() != reduced.size()) {
    throw std::invalid_argument("multihead core: reduction flags do not match the dims");
  }
  ReducePlan p;
  idx n = 0;
  if (!count_fits(dims.begin(), dims.end(), &n)) {
    throw std::length_error("multihead core: an array to reduce has a negative size or more than 2^52 elements");
  }
  p.n = n;
  if (n == 0) {
    // Nothing to read: only the counts matter.
    std::vector<idx> kept, red;
    for (size_t a = 0; a < dims.size(); ++a) (reduced[a] ? red : kept).push_back(dims[a]);
    idx nk = 0, nr = 0;
    count_fits(kept.begin(), kept.end(), &nk);
    count_fits(red.begin(), red.end(), &nr);
    p.inner = 1;
    p.outer = nk;
    p.reduced = nr;
    p.rdim = {1}; p.rstride = {0}; p.odim = {1}; p.ostride = {0}; p.dim = {1}; p.outstride = {0};
    return p;
  }
  std::vector<idx> run_dim;
  std::vector<int> run_red;
  for (size_t a = 0; a < dims.size(); ++a) {
    if (dims[a] == 1) continue;
    const int r = reduced[a] ? 1 : 0;
    if (!run_dim.empty() && run_red.back() == r) {
      run_dim.back() *= dims[a];
    } else {
      run_dim.push_back(dims[a]);
      run_red.push_back(r);
    }
  }
  if (run_dim.size() > static_cast<size_t>(kMaxRuns)) {
    throw std::invalid_argument("multihead core: too many axes to reduce");
  }
  idx xs = 1, os = 1;
  for (size_t k = 0; k < run_dim.size(); ++k) {
    const idx d = run_dim[k];
    p.dim.push_back(d);
    if (run_red[k]) {
      p.rdim.push_back(d);
      p.rstride.push_back(xs);
      p.outstride.push_back(0);
      p.reduced *= d;
    } else {
      if (k == 0) {
        p.inner = d;
      } else {
        p.odim.push_back(d);
        p.ostride.push_back(xs);
        p.outer *= d;
      }
      p.outstride.push_back(os);
      os *= d;
    }
    xs *= d;
  }
  if (p.rdim.empty()) { p.rdim = {1}; p.rstride = {0}; }
  if (p.odim.empty()) { p.odim = {1}; p.ostride = {0}; }
  if (p.dim.empty()) { p.dim = {1}; p.outstride = {0}; }
  return p;
}

ReduceOp reduce_op_from_code(int code) {
  if (code < 0 || code >= static_cast<int>(ReduceOp::Count)) {
    throw std::invalid_argument("multihead core: unknown reduction code");
  }
  return static_cast<ReduceOp>(code);
}

// ---- reductions --------------------------------------------------------------------------

template <class In>
void reduce_forward(ReduceOp op, const In* x, const ReducePlan& p, double pw, double* out,
                    int threads) {
  const idx outputs = p.outputs();
  switch (op) {
    case ReduceOp::Sum: reduce_states(p, SumAcc<In>{x}, out, threads); return;
    case ReduceOp::Prod: reduce_states(p, ProdAcc<In>{x}, out, threads); return;
    case ReduceOp::Max: reduce_states(p, ExtremeAcc<In, true, false>{x}, out, threads); return;
    case ReduceOp::Min: reduce_states(p, ExtremeAcc<In, false, false>{x}, out, threads); return;
    case ReduceOp::Any: reduce_states(p, LogicalAcc<In, true>{x}, out, threads); return;
    case ReduceOp::All: reduce_states(p, LogicalAcc<In, false>{x}, out, threads); return;
    case ReduceOp::CountNonzero: reduce_states(p, CountAcc<In>{x}, out, threads); return;
    case ReduceOp::Mean: mean_of(x, p, out, threads); return;
    case ReduceOp::Var:
    case ReduceOp::Std: {
      Buffer<double> mean(static_cast<size_t>(outputs));
      mean_of(x, p, mean.data(), threads);
      reduce_states(p, SquaredDevAcc<In>{x, mean.data()}, out, threads);
      const double n = static_cast<double>(p.reduced);
      for (idx a = 0; a < outputs; ++a) {
        out[a] /= n;
        if (op == ReduceOp::Std) out[a] = std::sqrt(out[a]);
      }
      return;
    }
    case ReduceOp::LogSumExp: {
      Buffer<double> shift(static_cast<size_t>(outputs));
      reduce_states(p, ExtremeAcc<In, true, false>{x}, shift.data(), threads);
      for (auto& m : shift) {
        if (!std::isfinite(m)) m = std::isnan(m) ? m : 0.0;
      }
      reduce_states(p, ExpSumAcc<In>{x, shift.data()}, out, threads);
      for (idx a = 0; a < outputs; ++a) out[a] = shift[a] + std::log(out[a]);
      return;
    }
    case ReduceOp::Norm2: norm2_of(x, p, out, threads); return;
    case ReduceOp::SumAbs: reduce_states(p, AbsSumAcc<In>{x}, out, threads); return;
    case ReduceOp::MaxAbs: reduce_states(p, ExtremeAcc<In, true, true>{x}, out, threads); return;
    case ReduceOp::MinAbs: reduce_states(p, ExtremeAcc<In, false, true>{x}, out, threads); return;
    case ReduceOp::NormP: {
      reduce_states(p, PowAbsAcc<In>{x, pw}, out, threads);
      for (idx a = 0; a < outputs; ++a) out[a] = std::pow(out[a], 1.0 / pw);
      return;
    }
    case ReduceOp::ArgMax: arg_of<In, true>(x, p, out, threads); return;
    case ReduceOp::ArgMin: arg_of<In, false>(x, p, out, threads); return;
    default: throw std::invalid_argument("multihead core: unknown reduction");
  }
}

void reduce_backward(ReduceOp op, const double* x, const ReducePlan& p, double pw,
                     const double* out, const double* g, double* dx, int threads) {
  const idx outputs = p.outputs();
  const double n = static_cast<double>(p.reduced);
  switch (op) {
    case ReduceOp::Sum:
      map_elements(p, threads, [&](idx pos, idx o) { dx[pos] = g[o]; });
      return;
    case ReduceOp::Mean:
      map_elements(p, threads, [&](idx pos, idx o) { dx[pos] = g[o] / n; });
      return;
    case ReduceOp::Prod: {
      Buffer<ZeroProdState> s(static_cast<size_t>(outputs));
      reduce_states(p, ZeroProdAcc{x}, s.data(), threads);
      map_elements(p, threads, [&](idx pos, idx o) {
        const ZeroProdState& z = s[o];
        if (z.zeros == 0.0) {
          dx[pos] = g[o] * (z.prod / x[pos]);
        } else if (z.zeros == 1.0 && x[pos] == 0.0) {
          dx[pos] = g[o] * z.prod;
        } else {
          dx[pos] = 0.0;
        }
      });
      return;
    }
    case ReduceOp::Max:
    case ReduceOp::Min: {
      Buffer<double> ties(static_cast<size_t>(outputs));
      reduce_states(p, TieAcc<false>{x, out}, ties.data(), threads);
      map_elements(p, threads, [&](idx pos, idx o) {
        dx[pos] = x[pos] == out[o] ? g[o] / ties[o] : 0.0;
      });
      return;
    }
    case ReduceOp::MaxAbs:
    case ReduceOp::MinAbs: {
      Buffer<double> ties(static_cast<size_t>(outputs));
      reduce_states(p, TieAcc<true>{x, out}, ties.data(), threads);
      map_elements(p, threads, [&](idx pos, idx o) {
        dx[pos] = std::fabs(x[pos]) == out[o] ? sign_of(x[pos]) * g[o] / ties[o] : 0.0;
      });
      return;
    }
    case ReduceOp::Var:
    case ReduceOp::Std: {
      Buffer<double> mean(static_cast<size_t>(outputs));
      mean_of(x, p, mean.data(), threads);
      const bool is_std = op == ReduceOp::Std;
      map_elements(p, threads, [&](idx pos, idx o) {
        const double d = x[pos] - mean[o];
        if (is_std) {
          dx[pos] = out[o] == 0.0 ? 0.0 : g[o] * d / (n * out[o]);
        } else {
          dx[pos] = g[o] * 2.0 * d / n;
        }
      });
      return;
    }
    case ReduceOp::LogSumExp:
      map_elements(p, threads, [&](idx pos, idx o) { dx[pos] = g[o] * std::exp(x[pos] - out[o]); });
      return;
    case ReduceOp::Norm2:
      map_elements(p, threads, [&](idx pos, idx o) {
        dx[pos] = out[o] == 0.0 ? 0.0 : g[o] * (x[pos] / out[o]);
      });
      return;
    case ReduceOp::SumAbs:
      map_elements(p, threads, [&](idx pos, idx o) { dx[pos] = g[o] * sign_of(x[pos]); });
      return;
    case ReduceOp::NormP:
      map_elements(p, threads, [&](idx pos, idx o) {
        const double v = x[pos];
        if (v == 0.0 || out[o] == 0.0) {
          dx[pos] = 0.0;
        } else {
          dx[pos] = g[o] * sign_of(v) * std::pow(std::fabs(v) / out[o], pw - 1.0);
        }
      });
      return;
    case ReduceOp::CountNonzero:
    case ReduceOp::Any:
    case ReduceOp::All:
    case ReduceOp::ArgMax:
    case ReduceOp::ArgMin:
      map_elements(p, threads, [&](idx pos, idx) { dx[pos] = 0.0; });
      return;
    default: throw std::invalid_argument("multihead core: unknown reduction");
  }
}

// ---- softmax ---------------------------------------------------------------------------------

void softmax_forward(const double* x, const ReducePlan& p, bool log, double* y, int threads) {
  const idx outputs = p.outputs();
  Buffer<double> m(static_cast<size_t>(outputs)), s(static_cast<size_t>(outputs));
  reduce_states(p, ExtremeAcc<double, true, false>{x}, m.data(), threads);
  if (log) {
    reduce_states(p, ExpSumAcc<double>{x, m.data()}, s.data(), threads);
    for (idx a = 0; a < outputs; ++a) s[a] = m[a] + std::log(s[a]);
    map_elements(p, threads, [&](idx pos, idx o) { y[pos] = x[pos] - s[o]; });
  } else {
    reduce_states(p, ExpStoreAcc{x, m.data(), y}, s.data(), threads);
    map_elements(p, threads, [&](idx pos, idx o) { y[pos] /= s[o]; });
  }
}

void softmax_backward(const double* y, const double* g, const ReducePlan& p, bool log, double* dx,
                      int threads) {
  Buffer<double> s(static_cast<size_t>(p.outputs()));
  if (log) {
    reduce_states(p, SumAcc<double>{g}, s.data(), threads);
    map_elements(p, threads, [&](idx pos, idx o) { dx[pos] = g[pos] - std::exp(y[pos]) * s[o]; });
  } else {
    reduce_states(p, DotAcc{g, y}, s.data(), threads);
    map_elements(p, threads, [&](idx pos, idx o) { dx[pos] = y[pos] * (g[pos] - s[o]); });
  }
}

// ---- cumulative ops ----------------------------------------------------------------------------

namespace {

// body(o, i0, i1) over tasks of whole lines: (block of outer) x (block of inner).
template <class F>
void for_lines(idx outer, idx len, idx inner, int threads, F body) {
  const idx n = outer * len * inner;
  if (n == 0) return;
  const idx ib = std::min(inner, kInnerBlock);
  const idx nib = ceil_div(inner, ib);
  const idx ob = std::max<idx>(1, kTask / (ib * len));
  const idx nob = ceil_div(outer, ob);
  parallel_for(static_cast<long>(nob * nib), threads_for(n, threads), [&](long t) {
    const idx ibi = t % nib, obi = t / nib;
    const idx i0 = ibi * ib, i1 = std::min(inner, i0 + ib);
    const idx o0 = obi * ob, o1 = std::min(outer, o0 + ob);
    for (idx o = o0; o < o1; ++o) body(o, i0, i1);
  });
}

}  // namespace

template <class In>
void cumulative_forward(const In* x, idx outer, idx len, idx inner, bool prod, double* y,
                        int threads) {
  for_lines(outer, len, inner, threads, [&](idx o, idx i0, idx i1) {
    const idx base = o * len * inner;
    for (idx i = i0; i < i1; ++i) y[base + i] = static_cast<double>(x[base + i]);
    for (idx k = 1; k < len; ++k) {
      const idx at = base + k * inner, prev = at - inner;
      if (prod) {
        for (idx i = i0; i < i1; ++i) y[at + i] = y[prev + i] * static_cast<double>(x[at + i]);
      } else {
        for (idx i = i0; i < i1; ++i) y[at + i] = y[prev + i] + static_cast<double>(x[at + i]);
      }
    }
  });
}

void cumulative_backward(const double* x, const double* y, const double* g, idx outer, idx len,
                         idx inner, bool prod, double* dx, int threads) {
  for_lines(outer, len, inner, threads, [&](idx o, idx i0, idx i1) {
    const idx base = o * len * inner;
    const idx last = base + (len - 1) * inner;
    if (!prod) {
      for (idx i = i0; i < i1; ++i) dx[last + i] = g[last + i];
      for (idx k = len - 2; k >= 0; --k) {
        const idx at = base + k * inner, next = at + inner;
        for (idx i = i0; i < i1; ++i) dx[at + i] = dx[next + i] + g[at + i];
      }
      return;
    }
    // S_k = g_k + x_{k+1} S_{k+1} (kept in dx until multiplied), dx_k = y_{k-1} S_k.
    for (idx i = i0; i < i1; ++i) dx[last + i] = g[last + i];
    for (idx k = len - 2; k >= 0; --k) {
      const idx at = base + k * inner, next = at + inner;
      for (idx i = i0; i < i1; ++i) dx[at + i] = g[at + i] + x[next + i] * dx[next + i];
    }
    for (idx k = len - 1; k >= 1; --k) {
      const idx at = base + k * inner, prev = at - inner;
      for (idx i = i0; i < i1; ++i) dx[at + i] *= y[prev + i];
    }
  });
}

#define MH_INSTANTIATE_REDUCE(In)                                                             \
  template void reduce_forward<In>(ReduceOp, const In*, const ReducePlan&, double, double*, int); \
  template void cumulative_forward<In>(const In*, idx, idx, idx, bool, double*, int);

MH_INSTANTIATE_REDUCE(double)
MH_INSTANTIATE_REDUCE(int32_t)

}  // namespace mh
