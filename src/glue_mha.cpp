// Rcpp glue for the attention layers (MultiHeadAttention,
// GroupedQueryAttention): converts R's arguments into one mh::MhaCall, asks
// the core for the call's path (mh::mha_choose_path), runs it
// (mh::mha_forward_path / mh::mha_backward_path) and converts the results
// back. All validation happens in R before this.
#include <Rcpp.h>

#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/dense.h"
#include "core/dropout_rng.h"
#include "core/mha.h"
#include "core/mha_cached.h"
#include "glue_convert.h"

using mhglue::core_row_of;
using mhglue::from_core;
using mhglue::idx;
using mhglue::keeps_tail;
using mhglue::to_core;
using mhglue::weight_from_core;
using mhglue::weight_to_core;

namespace {

bool same_order(const Rcpp::IntegerVector& a, const Rcpp::IntegerVector& b) {
  if (a.size() != b.size()) return false;
  for (R_xlen_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

// The layer's weight slots, in Keras's weight order (the gate, when present,
// between key and value). This is the one statement of the order: R reads
// it through cpp_mha_weight_slots() and builds its slot lists from it.
enum Slot { WQ, BQ, WK, BK, WG, BG, WV, BV, WO, BO, N_SLOTS };
const char* const kSlotNames[N_SLOTS] = {
    "query/kernel", "query/bias", "key/kernel", "key/bias", "gate/kernel", "gate/bias",
    "value/kernel", "value/bias", "attention_output/kernel", "attention_output/bias"};

// The weight slots converted to the core's layout and type once, kept by the
// layer between calls (R caches the external pointer with its weights, see
// mha_core_weights() in R/layer-multi-head-attention.R): a call then skips
// converting them.
struct CoreWeights {
  bool float64 = false;
  std::vector<mh::Buffer<float>> f;   // slots, float32 layers
  std::vector<mh::Buffer<double>> d;  // slots, float64 layers
  std::vector<R_xlen_t> length;       // each slot's element count (-1: absent)
  // The R arrays they were made from, compared by address only: R attaches
  // the pointer to the very list of those arrays and drops both together
  // when the weights change, so a pointer offered with other arrays (e.g.
  // attached by hand) is refused instead of giving another layer's weights.
  std::vector<SEXP> source;
};

template <class T>
const std::vector<mh::Buffer<T>>& core_slots(const CoreWeights& cw);
template <>
const std::vector<mh::Buffer<float>>& core_slots<float>(const CoreWeights& cw) { return cw.f; }
template <>
const std::vector<mh::Buffer<double>>& core_slots<double>(const CoreWeights& cw) { return cw.d; }

// The converted weights in `core_weights` when it is a live pointer made for
// these weights' shapes and this type, else null (then the call converts).
template <class T>
const CoreWeights* usable_core_weights(SEXP core_weights, const Rcpp::List& weights) {
  if (TYPEOF(core_weights) != EXTPTRSXP || !R_ExternalPtrAddr(core_weights)) return nullptr;
  if (!Rf_inherits(core_weights, "multihead_core_weights")) return nullptr;
  const CoreWeights* cw = static_cast<const CoreWeights*>(R_ExternalPtrAddr(core_weights));
  if (cw->float64 != std::is_same<T, double>::value || weights.size() != N_SLOTS ||
      cw->length.size() != static_cast<size_t>(N_SLOTS)) {
    return nullptr;
  }
  for (int i = 0; i < N_SLOTS; ++i) {
    const R_xlen_t n = Rf_isNull(weights[i]) ? -1 : Rf_xlength(weights[i]);
    if (n != cw->length[i] || SEXP(weights[i]) != cw->source[i]) return nullptr;
  }
  return cw;
}

Rcpp::IntegerVector int_dims(const std::vector<idx>& d) {
  Rcpp::IntegerVector out(d.size());
  for (size_t k = 0; k < d.size(); ++k) out[k] = static_cast<int>(d[k]);
  return out;
}

// Whether every value of a converted buffer is finite (y - y is 0 exactly
// for finite y): a double beyond float's range converts to +-Inf.
template <class T>
bool all_finite(const T* p, size_t n) {
  T acc = T(0);
  for (size_t i = 0; i < n; ++i) acc += p[i] - p[i];
  return acc == T(0);
}
template <class B>
bool all_finite(const B& b) {
  return all_finite(b.data(), b.size());
}

// The R arguments of one call (cpp_mha_call's, see there).
struct CallArgs {
  SEXP query, key, value;
  Rcpp::IntegerVector q_order, kv_order, dims;
  Rcpp::List weights;
  SEXP core_weights, mask;
  Rcpp::IntegerVector mask_bn;
  SEXP qmask, kmask;
  bool causal;
  int window;
  double dropout_rate, dropout_seed, dropout_counter;
  bool return_scores, flash;
  int threads;
  Rcpp::IntegerVector out_dims, out_order, scores_dims;
};

// A call after conversion: its mh::MhaCall and everything the call's
// pointers point into, owned here (converted inputs and weights) or kept
// alive here (R's arrays), so that a recorded forward can be differentiated
// later from this state alone.
class RecordBase {
 public:
  virtual ~RecordBase() = default;
  // The backward pass from the kept forward; list(query, key, value, weights).
  // need: whether dL/dquery, dL/dkey, dL/dvalue are wanted (NULL in the
  // result for the others, which are not computed).
  virtual Rcpp::List backward(SEXP grad_output, const bool need[3]) = 0;
};

template <class T>
class CallState : public RecordBase {
 public:
  explicit CallState(const CallArgs& a)
      : a_(a), query_(a.query), key_(a.key), value_(a.value), mask_(a.mask), qmask_(a.qmask),
        kmask_(a.kmask), weights_(a.weights), core_weights_(a.core_weights) {
    native_ = mhglue::native_tensor(a.query) != nullptr;
    mh::MhaCall<T>& c = call_;
    mh::MhaDims& d = c.d;
    const Rcpp::IntegerVector& dims = a.dims;
    d.B = dims[0]; d.T = dims[1]; d.S = dims[2]; d.E = dims[3]; d.Dk = dims[4]; d.Dv = dims[5];
    d.N = dims[6]; d.H = dims[7]; d.Hv = dims[8]; d.O = dims[9];
    d.Nkv = dims.size() > 10 ? dims[10] : 0;
    c.threads = a.threads;

    // weights: the layer's converted copy when it fits, else converted here
    wbuf_.resize(N_SLOTS);
    const T* wp[N_SLOTS] = {nullptr};
    const CoreWeights* cw = usable_core_weights<T>(a.core_weights, a.weights);
    for (int i = 0; i < N_SLOTS; ++i) {
      if (Rf_isNull(a.weights[i])) continue;
      if (cw) {
        wp[i] = core_slots<T>(*cw)[i].data();
        wsize_[i] = core_slots<T>(*cw)[i].size();
      } else {
        wbuf_[i] = weight_to_core<T>(a.weights[i]);
        wp[i] = wbuf_[i].data();
        wsize_[i] = wbuf_[i].size();
      }
    }
    mh::MhaWeights<T>& w = c.w;
    w.wq = wp[WQ]; w.bq = wp[BQ]; w.wk = wp[WK]; w.bk = wp[BK]; w.wg = wp[WG]; w.bg = wp[BG];
    w.wv = wp[WV]; w.bv = wp[BV]; w.wo = wp[WO]; w.bo = wp[BO];

    mh::AttentionMask& m = c.mask;
    if (!Rf_isNull(a.mask)) {
      m.mask = INTEGER(a.mask);
      m.mask_b = a.mask_bn[0];
      m.mask_n = a.mask_bn[1];
    }
    if (!Rf_isNull(a.qmask)) m.qmask = INTEGER(a.qmask);
    if (!Rf_isNull(a.kmask)) m.kmask = INTEGER(a.kmask);
    m.causal = a.causal;
    m.window = a.window;

    c.drop.rate = a.dropout_rate;
    c.drop.key = mh::dropout_key(static_cast<uint64_t>(a.dropout_seed),
                                 static_cast<uint64_t>(a.dropout_counter));
  }

  // Runs the forward pass (keeping its cache when `keep`); returns
  // list(output, scores).
  Rcpp::List forward(bool keep, SEXP grad_output) {
    mh::MhaCallFacts facts;
    facts.flash = a_.flash;
    facts.scores = a_.return_scores;
    facts.in_place_io = in_place_layout(grad_output);
    path_ = mh::mha_choose_path(facts);
    mh::MhaCache<T>* cache = keep ? &cache_ : nullptr;
    Rcpp::List result = Rcpp::List::create(Rcpp::Named("output") = R_NilValue,
                                           Rcpp::Named("scores") = R_NilValue);
    const mh::MhaDims& d = call_.d;
    if (path_ == mh::MhaPath::kFlashInPlace) {
      Rcpp::NumericVector out = mhglue::fresh_numeric(
          static_cast<R_xlen_t>(mhglue::checked_count({d.B, d.T, d.O}, "the attention output")));
      call_.io.check_finite = true;  // NA/NaN/Inf found while converting (NonFiniteInput)
      call_.io.xq = REAL_RO(a_.query);
      call_.io.xk = REAL_RO(a_.key);
      call_.io.xv = REAL_RO(a_.value);
      call_.io.q_row = q_row_.data();
      call_.io.kv_row = kv_row_.data();
      call_.io.out = REAL(out);
      call_.io.out_col = out_col_.empty() ? nullptr : out_col_.data();
      mh::mha_forward_path(path_, call_, cache);
      call_.io.out = nullptr;  // R owns it from here
      out.attr("dim") = a_.out_dims;
      result["output"] = out;
      return result;
    }
    convert_inputs();
    mh::Buffer<T> out(static_cast<size_t>(mhglue::checked_count({d.B, d.T, d.O}, "the attention output")));
    mh::Buffer<T> scores;
    if (a_.return_scores) {
      scores.resize(static_cast<size_t>(
          mhglue::checked_count({d.B, d.N, d.T, d.S}, "the attention scores")));
    }
    call_.out = out.data();
    call_.scores = scores.empty() ? nullptr : scores.data();
    mh::mha_forward_path(path_, call_, cache);
    call_.out = nullptr;
    call_.scores = nullptr;
    if (!keep) release_inputs();
    result["output"] = mhglue::core_output(std::move(out), a_.out_dims, a_.out_order, native_, a_.threads);
    if (a_.return_scores) {
      Rcpp::IntegerVector natural(a_.scores_dims.size());
      for (int k = 0; k < natural.size(); ++k) natural[k] = k;
      result["scores"] = from_core(scores.data(), a_.scores_dims, natural, a_.threads);
    }
    return result;
  }

  Rcpp::List backward(SEXP grad_output, const bool need[3]) override {
    if (done_) Rcpp::stop("multihead: this attention forward record was already differentiated");
    done_ = true;
    const mh::MhaDims& d = call_.d;
    const int threads = a_.threads;
    std::vector<mh::Buffer<T>> dw(N_SLOTS);
    for (int i = 0; i < N_SLOTS; ++i) dw[i].resize(wsize_[i]);
    const mh::MhaWeights<T>& w = call_.w;
    const T* wp[N_SLOTS] = {w.wq, w.bq, w.wk, w.bk, w.wg, w.bg, w.wv, w.bv, w.wo, w.bo};
    auto ptr = [&](int i) { return wp[i] ? dw[i].data() : nullptr; };
    mh::MhaBackwardIO<T> io;
    mh::MhaGrads<T>& g = io.g;
    g.dwq = ptr(WQ); g.dbq = ptr(BQ); g.dwk = ptr(WK); g.dbk = ptr(BK); g.dwg = ptr(WG);
    g.dbg = ptr(BG); g.dwv = ptr(WV); g.dbv = ptr(BV); g.dwo = ptr(WO); g.dbo = ptr(BO);
    const Rcpp::IntegerVector qd = int_dims(mhglue::r_dims(a_.query)), kd = int_dims(mhglue::r_dims(a_.key)),
                              vd = int_dims(mhglue::r_dims(a_.value));
    Rcpp::RObject gq, gk, gv;  // (protected while the others are made)
    Rcpp::NumericVector rq, rk, rv;  // the in-place path's results
    if (path_ == mh::MhaPath::kFlashInPlace) {
      if (TYPEOF(grad_output) != REALSXP) {
        Rcpp::stop("multihead: the in-place attention backward needs a double grad_output");
      }
      // dL/dquery, dL/dkey, dL/dvalue written straight into R arrays (three
      // of them even when the inputs are one array; R sums them).
      if (need[0]) rq = mhglue::fresh_numeric(Rf_xlength(a_.query));
      if (need[1]) rk = mhglue::fresh_numeric(Rf_xlength(a_.key));
      if (need[2]) rv = mhglue::fresh_numeric(Rf_xlength(a_.value));
      io.cg.dout = REAL_RO(grad_output);
      io.cg.dxq = need[0] ? REAL(rq) : nullptr;
      io.cg.dxk = need[1] ? REAL(rk) : nullptr;
      io.cg.dxv = need[2] ? REAL(rv) : nullptr;
      mh::mha_backward_path(call_, cache_, io);
      auto shaped = [](Rcpp::NumericVector& gx, bool wanted, const Rcpp::IntegerVector& dims) -> SEXP {
        if (!wanted) return R_NilValue;
        gx.attr("dim") = dims;
        return gx;
      };
      gq = shaped(rq, need[0], qd);
      gk = shaped(rk, need[1], kd);
      gv = shaped(rv, need[2], vd);
    } else {
      if (!mhglue::native_tensor(grad_output) && !cpp_all_finite(grad_output, threads)) {
        throw mh::NonFiniteInput(mh::NonFiniteInput::kOutputGradient);
      }
      mhglue::CoreInput<T> dout = mhglue::core_input<T>(grad_output, a_.out_order, threads);
      if (std::is_same<T, float>::value && !all_finite(dout)) throw mh::NonFiniteInput(mh::NonFiniteInput::kOutputGradient);
      mh::Buffer<T> dxq(need[0] ? xq_.size() : 0),
          dxk(need[1] ? static_cast<size_t>(mhglue::checked_count({d.B, d.S, d.Dk}, "dL/dkey")) : 0),
          dxv(need[2] ? static_cast<size_t>(mhglue::checked_count({d.B, d.S, d.Dv}, "dL/dvalue")) : 0);
      io.dout = dout.data();
      g.dxq = need[0] ? dxq.data() : nullptr;
      g.dxk = need[1] ? dxk.data() : nullptr;
      g.dxv = need[2] ? dxv.data() : nullptr;
      mh::mha_backward_path(call_, cache_, io);
      // Free each core buffer before the next result is made.
      dout = mhglue::CoreInput<T>();
      release_inputs();
      if (need[0]) gq = mhglue::core_output(std::move(dxq), qd, a_.q_order, native_, threads);
      mh::Buffer<T>().swap(dxq);
      if (need[1]) gk = mhglue::core_output(std::move(dxk), kd, a_.kv_order, native_, threads);
      mh::Buffer<T>().swap(dxk);
      if (need[2]) gv = mhglue::core_output(std::move(dxv), vd, a_.kv_order, native_, threads);
      mh::Buffer<T>().swap(dxv);
    }
    cache_ = mh::MhaCache<T>();  // a record is differentiated once: its forward state goes now
    Rcpp::List wgrads(N_SLOTS);
    for (int i = 0; i < N_SLOTS; ++i) {
      if (wp[i]) wgrads[i] = weight_from_core(dw[i].data(), a_.weights[i]);
    }
    return Rcpp::List::create(Rcpp::Named("query") = gq, Rcpp::Named("key") = gk,
                              Rcpp::Named("value") = gv, Rcpp::Named("weights") = wgrads);
  }

 private:
  // Whether the flash in-place path can read the caller's arrays: doubles,
  // the feature axis last and in place (the core's rows are the other axes
  // in R's order), the output's rows the query's, and (with a backward) a
  // double grad_output. Fills the row maps it needs.
  bool in_place_layout(SEXP grad_output) {
    const CallArgs& a = a_;
    const int rq = Rf_length(Rf_getAttrib(a.query, R_DimSymbol));
    const int rkv = Rf_length(Rf_getAttrib(a.value, R_DimSymbol));
    const bool ok = (Rf_isNull(grad_output) || TYPEOF(grad_output) == REALSXP) &&
                    TYPEOF(a.query) == REALSXP && TYPEOF(a.key) == REALSXP &&
                    TYPEOF(a.value) == REALSXP && rq == a.q_order.size() &&
                    rkv == a.kv_order.size() &&
                    Rf_length(Rf_getAttrib(a.key, R_DimSymbol)) == rkv &&
                    keeps_tail(a.q_order, rq - 1) && keeps_tail(a.kv_order, rkv - 1) &&
                    keeps_tail(a.out_order, rq - 1);
    if (!ok) return false;
    for (int k = 0; k < rq - 1; ++k)
      if (a.out_order[k] != a.q_order[k]) return false;  // the output's rows are the query's
    q_row_ = core_row_of(mhglue::r_dims(a.query), rq - 1, a.q_order);
    kv_row_ = core_row_of(mhglue::r_dims(a.value), rkv - 1, a.kv_order);
    // Output features: the core orders them row-major, R column-major.
    const int n_out_axes = a.out_dims.size() - (rq - 1);
    if (n_out_axes > 1) {
      std::vector<idx> fd(n_out_axes);
      Rcpp::IntegerVector natural(n_out_axes);
      for (int k = 0; k < n_out_axes; ++k) {
        fd[k] = a.out_dims[rq - 1 + k];
        natural[k] = k;
      }
      const std::vector<idx> core_of_col = core_row_of(fd, n_out_axes, natural);
      out_col_.resize(core_of_col.size());
      for (size_t c = 0; c < core_of_col.size(); ++c) out_col_[core_of_col[c]] = static_cast<idx>(c);
    }
    return true;
  }

  // The converted paths' inputs: row-major copies in the core's layout;
  // shared arrays (self-attention, key = value) are converted once. They
  // are scanned for NA/NaN/Inf first (the in-place path checks while
  // converting), each array once, in the order of NonFiniteInput.
  void convert_inputs() {
    const CallArgs& a = a_;
    auto scan = [&](SEXP x, mh::NonFiniteInput::Input which) {  // (a native tensor: checked below)
      if (!mhglue::native_tensor(x) && !cpp_all_finite(x, a.threads)) throw mh::NonFiniteInput(which);
    };
    scan(a.query, mh::NonFiniteInput::kQuery);
    if (a.value != a.query) scan(a.value, mh::NonFiniteInput::kValue);
    if (a.key != a.value && a.key != a.query) scan(a.key, mh::NonFiniteInput::kKey);
    xq_ = mhglue::core_input<T>(a.query, a.q_order, a.threads);
    const T* xv;
    const T* xk;
    if (a.value == a.query && same_order(a.kv_order, a.q_order)) {
      xv = xq_.data();
    } else {
      xv_ = mhglue::core_input<T>(a.value, a.kv_order, a.threads);
      xv = xv_.data();
    }
    if (a.key == a.value) {
      xk = xv;
    } else if (a.key == a.query && same_order(a.kv_order, a.q_order)) {
      xk = xq_.data();
    } else {
      xk_ = mhglue::core_input<T>(a.key, a.kv_order, a.threads);
      xk = xk_.data();
    }
    // beyond float's range: finite in R, infinite once converted
    if (std::is_same<T, float>::value) {
      if (!all_finite(xq_)) throw mh::NonFiniteInput(mh::NonFiniteInput::kQuery);
      if (!all_finite(xv_)) throw mh::NonFiniteInput(mh::NonFiniteInput::kValue);
      if (!all_finite(xk_)) throw mh::NonFiniteInput(mh::NonFiniteInput::kKey);
    }
    call_.xq = xq_.data();
    call_.xk = xk;
    call_.xv = xv;
  }

  void release_inputs() {
    xq_ = mhglue::CoreInput<T>();
    xk_ = mhglue::CoreInput<T>();
    xv_ = mhglue::CoreInput<T>();
    call_.xq = call_.xk = call_.xv = nullptr;
  }

  CallArgs a_;
  // R objects the call's pointers read, kept alive with the record
  Rcpp::RObject query_, key_, value_, mask_, qmask_, kmask_, weights_, core_weights_;
  mh::MhaCall<T> call_;
  mh::MhaPath path_ = mh::MhaPath::kMaterialised;
  mh::MhaCache<T> cache_;
  std::vector<mh::Buffer<T>> wbuf_;
  size_t wsize_[N_SLOTS] = {0};
  mhglue::CoreInput<T> xq_, xk_, xv_;  // converted inputs, or native tensors read in place
  bool native_ = false;                 // a native query: native results
  std::vector<idx> q_row_, kv_row_, out_col_;
  bool done_ = false;
};

template <class T>
Rcpp::List run_call(const CallArgs& a, SEXP grad_output, bool record) {
  std::unique_ptr<CallState<T>> st(new CallState<T>(a));
  const bool backward = !Rf_isNull(grad_output);
  Rcpp::List res = st->forward(backward || record, grad_output);
  Rcpp::List out = Rcpp::List::create(Rcpp::Named("output") = res["output"],
                                      Rcpp::Named("scores") = res["scores"],
                                      Rcpp::Named("grads") = R_NilValue,
                                      Rcpp::Named("record") = R_NilValue);
  if (backward) {
    const bool all[3] = {true, true, true};
    out["grads"] = st->backward(grad_output, all);
  } else if (record) {
    Rcpp::XPtr<RecordBase> ptr(st.release(), true);
    ptr.attr("class") = "multihead_attention_record";
    out["record"] = ptr;
  }
  return out;
}

// An input with NA/NaN/Inf (or beyond float's range in a float32 call): R
// reports it, naming the argument (nonfinite: 1 query, 2 value, 3 key,
// 4 grad_output). Logits beyond the computation's range: list(overflow = TRUE).
template <class F>
Rcpp::List nonfinite_as_list(F f) {
  return mhglue::out_of_memory_as_error([&]() -> Rcpp::List {
    try {
      return f();
    } catch (const mh::NonFiniteInput& e) {
      return Rcpp::List::create(Rcpp::Named("nonfinite") = static_cast<int>(e.input) + 1);
    } catch (const mh::LogitOverflow&) {
      return Rcpp::List::create(Rcpp::Named("overflow") = true);
    }
  });
}

}  // namespace

// The names of the layer's weight slots in the order cpp_mha_call() takes
// them (Keras's weight order).
// [[Rcpp::export]]
Rcpp::CharacterVector cpp_mha_weight_slots() {
  Rcpp::CharacterVector out(N_SLOTS);
  for (int i = 0; i < N_SLOTS; ++i) out[i] = kSlotNames[i];
  return out;
}

// Forward (and, when grad_output is not NULL, backward) of one attention call.
// dims = (B, T, S, E, Dk, Dv, N, H, Hv, O[, Nkv]) in the core's flattened
// sense; q_order / kv_order / out_order: 0-based Keras axes in core order;
// weights: the slots of cpp_mha_weight_slots(), NULL if absent.
// flash: the layer allows the flash kernel (the core decides the path).
// record: keep what the backward pass needs and return it as `record` (an
// external pointer for cpp_mha_backward()); ignored with grad_output.
// Returns list(output, scores, grads, record), list(nonfinite = k) or
// list(overflow = TRUE).
// [[Rcpp::export]]
Rcpp::List cpp_mha_call(SEXP query, SEXP key, SEXP value, Rcpp::IntegerVector q_order,
                        Rcpp::IntegerVector kv_order, Rcpp::IntegerVector dims,
                        Rcpp::List weights, SEXP core_weights, SEXP mask,
                        Rcpp::IntegerVector mask_bn, SEXP qmask,
                        SEXP kmask, bool causal, int window, double dropout_rate,
                        double dropout_seed, double dropout_counter, bool return_scores,
                        bool flash, bool float64, int threads, Rcpp::IntegerVector out_dims,
                        Rcpp::IntegerVector out_order, Rcpp::IntegerVector scores_dims,
                        SEXP grad_output, bool record = false) {
  if (weights.size() != N_SLOTS) Rcpp::stop("cpp_mha_call: expected %d weight slots", N_SLOTS);
  const CallArgs a{query, key, value, q_order, kv_order, dims, weights, core_weights, mask,
                   mask_bn, qmask, kmask, causal, window, dropout_rate, dropout_seed,
                   dropout_counter, return_scores, flash, threads, out_dims, out_order,
                   scores_dims};
  return nonfinite_as_list([&]() {
    return float64 ? run_call<double>(a, grad_output, record)
                   : run_call<float>(a, grad_output, record);
  });
}

// The backward pass of a recorded forward (cpp_mha_call(record = TRUE)):
// list(query, key, value, weights) (weights by slot), or list(nonfinite = 4).
// need: logical (query, key, value), the input gradients wanted (NULL for
// the others). A record is differentiated once.
// [[Rcpp::export]]
Rcpp::List cpp_mha_backward(SEXP record, SEXP grad_output, Rcpp::LogicalVector need) {
  if (TYPEOF(record) != EXTPTRSXP || !Rf_inherits(record, "multihead_attention_record") ||
      !R_ExternalPtrAddr(record)) {
    Rcpp::stop("multihead: not a live attention forward record");
  }
  if (need.size() != 3) Rcpp::stop("cpp_mha_backward: need must have 3 entries");
  const bool wanted[3] = {need[0] == TRUE, need[1] == TRUE, need[2] == TRUE};
  RecordBase* rec = static_cast<RecordBase*>(R_ExternalPtrAddr(record));
  return nonfinite_as_list([&]() { return rec->backward(grad_output, wanted); });
}

// One cached-attention call (keras_hub's CachedMultiHeadAttention, see
// core/mha_cached.h). query (B, T, E); key (B, U, Dk) and value (B, U, Dv)
// the update rows, or both NULL (update_index -1: the cache is used as it
// is); cache a double array (B, 2, S_max, Nkv, H). dims = (B, T, S, E, Dk,
// Dv, N, H, Hv, O, Nkv) with S the cache positions attended (<= S_max);
// mask (Bm, Nm, T, S) or NULL; query_offset: position of query row 0.
// Returns list(output, cache): the cache written at the update (a new array)
// or the given one unchanged; list(nonfinite = k) (1 query, 2 value, 3 key,
// 5 cache) or list(overflow = TRUE).
// [[Rcpp::export]]
Rcpp::List cpp_mha_cached_call(SEXP query, SEXP key, SEXP value, SEXP cache, int update_index,
                               Rcpp::IntegerVector dims, Rcpp::List weights, SEXP core_weights,
                               SEXP mask, Rcpp::IntegerVector mask_bn, SEXP qmask, bool causal,
                               int window, int query_offset, bool float64, int threads,
                               Rcpp::IntegerVector out_dims) {
  if (weights.size() != N_SLOTS) Rcpp::stop("cpp_mha_cached_call: expected %d weight slots", N_SLOTS);
  mh::MhaDims d;
  d.B = dims[0]; d.T = dims[1]; d.S = dims[2]; d.E = dims[3]; d.Dk = dims[4]; d.Dv = dims[5];
  d.N = dims[6]; d.H = dims[7]; d.Hv = dims[8]; d.O = dims[9]; d.Nkv = dims[10];
  const std::vector<idx> cd = mhglue::r_dims(cache);
  if (TYPEOF(cache) != REALSXP || cd.size() != 5) Rcpp::stop("cpp_mha_cached_call: cache");
  const bool update = update_index >= 0;
  const idx U = update ? mhglue::r_dims(value)[1] : 0;
  auto run = [&](auto zero) -> Rcpp::List {
    using T = decltype(zero);
    const Rcpp::IntegerVector o3 = Rcpp::IntegerVector::create(0, 1, 2);
    auto convert = [&](SEXP x, mh::NonFiniteInput::Input which) {
      if (!cpp_all_finite(x, threads)) throw mh::NonFiniteInput(which);
      mh::Buffer<T> c = to_core<T>(x, o3, threads);
      if (std::is_same<T, float>::value && !all_finite(c)) throw mh::NonFiniteInput(which);
      return c;
    };
    mh::Buffer<T> xq = convert(query, mh::NonFiniteInput::kQuery), xk, xv;
    if (update) {
      xv = convert(value, mh::NonFiniteInput::kValue);
      if (key != value) xk = convert(key, mh::NonFiniteInput::kKey);
    }
    std::vector<mh::Buffer<T>> wbuf(N_SLOTS);
    const T* wp[N_SLOTS] = {nullptr};
    const CoreWeights* cw = usable_core_weights<T>(core_weights, weights);
    for (int i = 0; i < N_SLOTS; ++i) {
      if (Rf_isNull(weights[i])) continue;
      if (cw) {
        wp[i] = core_slots<T>(*cw)[i].data();
      } else {
        wbuf[i] = weight_to_core<T>(weights[i]);
        wp[i] = wbuf[i].data();
      }
    }
    mh::MhaWeights<T> w;
    w.wq = wp[WQ]; w.bq = wp[BQ]; w.wk = wp[WK]; w.bk = wp[BK]; w.wg = wp[WG]; w.bg = wp[BG];
    w.wv = wp[WV]; w.bv = wp[BV]; w.wo = wp[WO]; w.bo = wp[BO];
    mh::AttentionMask m;
    if (!Rf_isNull(mask)) {
      m.mask = INTEGER(mask);
      m.mask_b = mask_bn[0];
      m.mask_n = mask_bn[1];
    }
    if (!Rf_isNull(qmask)) m.qmask = INTEGER(qmask);
    m.causal = causal;
    m.window = window;
    m.query_offset = query_offset;
    // the returned cache: a copy written at the update, else the given one
    SEXP out_cache = cache;
    Rcpp::NumericVector fresh;
    if (update) {
      fresh = mhglue::fresh_numeric(Rf_xlength(cache));
      std::copy(REAL(cache), REAL(cache) + Rf_xlength(cache), REAL(fresh));
      fresh.attr("dim") = Rf_getAttrib(cache, R_DimSymbol);
      out_cache = fresh;
    }
    mh::KeyValueCache kv;
    kv.data = REAL(out_cache);
    kv.s_max = cd[2];
    mh::Buffer<T> out(static_cast<size_t>(mhglue::checked_count({d.B, d.T, d.O}, "the attention output")));
    const T* xvp = xv.empty() ? nullptr : xv.data();
    mh::mha_cached_forward(d, xq.data(), xk.empty() ? xvp : xk.data(), xvp, U,
                           update ? update_index : 0, w, m, kv, threads, out.data());
    Rcpp::IntegerVector natural(out_dims.size());
    for (int k = 0; k < natural.size(); ++k) natural[k] = k;
    return Rcpp::List::create(Rcpp::Named("output") = from_core(out.data(), out_dims, natural, threads),
                              Rcpp::Named("cache") = out_cache);
  };
  return nonfinite_as_list([&]() -> Rcpp::List {
    try {
      return float64 ? run(0.0) : run(0.0f);
    } catch (const mh::NonFiniteCache&) {
      return Rcpp::List::create(Rcpp::Named("nonfinite") = 5);
    }
  });
}

// The layer's weight slots (NULL where absent) converted for the core
// (see CoreWeights): an external pointer of class "multihead_core_weights".
// [[Rcpp::export]]
SEXP cpp_mha_core_weights(Rcpp::List weights, bool float64) {
  if (weights.size() != N_SLOTS) Rcpp::stop("cpp_mha_core_weights: expected %d weight slots", N_SLOTS);
  return mhglue::out_of_memory_as_error([&]() {
    std::unique_ptr<CoreWeights> cw(new CoreWeights());
    cw->float64 = float64;
    cw->length.assign(N_SLOTS, -1);
    cw->source.assign(N_SLOTS, R_NilValue);
    if (float64) cw->d.resize(N_SLOTS); else cw->f.resize(N_SLOTS);
    for (int i = 0; i < N_SLOTS; ++i) {
      if (Rf_isNull(weights[i])) continue;
      cw->length[i] = Rf_xlength(weights[i]);
      cw->source[i] = weights[i];
      if (float64) {
        cw->d[i] = weight_to_core<double>(weights[i]);
      } else {
        cw->f[i] = weight_to_core<float>(weights[i]);
      }
    }
    Rcpp::XPtr<CoreWeights> ptr(cw.release(), true);
    ptr.attr("class") = "multihead_core_weights";
    return SEXP(ptr);
  });
}

// TRUE when x is core weights that still exist (an external pointer read back
// by readRDS() is null).
// [[Rcpp::export]]
bool cpp_core_weights_alive(SEXP x) {
  return TYPEOF(x) == EXTPTRSXP && Rf_inherits(x, "multihead_core_weights") &&
         R_ExternalPtrAddr(x) != nullptr;
}

// Dense-like einsum: contracts the last `n_contract` axes of x with the
// leading axes of kernel; output dims = (x's leading axes, kernel's rest).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_dense_call(SEXP x, int n_contract, SEXP kernel, SEXP bias, bool float64,
                                   int threads) {
  const std::vector<mh::idx> xd = mhglue::r_dims(x), kd = mhglue::r_dims(kernel);
  const int xr = static_cast<int>(xd.size()), kr = static_cast<int>(kd.size());
  mh::idx rows = 1, in = 1, out = 1;
  for (int i = 0; i < xr - n_contract; ++i) rows *= xd[i];
  for (int i = 0; i < n_contract; ++i) in *= kd[i];
  for (int i = n_contract; i < kr; ++i) out *= kd[i];
  Rcpp::IntegerVector od(xr - n_contract + kr - n_contract), order(od.size());
  for (int i = 0; i < xr - n_contract; ++i) od[i] = static_cast<int>(xd[i]);
  for (int i = n_contract; i < kr; ++i) od[xr - n_contract + i - n_contract] = static_cast<int>(kd[i]);
  for (int i = 0; i < od.size(); ++i) order[i] = i;
  Rcpp::IntegerVector xorder(xr);
  for (int i = 0; i < xr; ++i) xorder[i] = i;
  auto run = [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = to_core<T>(x, xorder, threads), kc = weight_to_core<T>(kernel), bc;
    if (!Rf_isNull(bias)) bc = weight_to_core<T>(bias);
    mh::Buffer<T> y(static_cast<size_t>(mhglue::checked_count({rows, out}, "the projection's output")));
    mh::dense_forward(xc.data(), rows, in, kc.data(), bc.empty() ? nullptr : bc.data(), out,
                      y.data(), threads);
    return from_core(y.data(), od, order, threads);
  };
  return float64 ? run(0.0) : run(0.0f);
}
