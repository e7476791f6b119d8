// Rcpp glue for the multi-head attention layer: convert R arrays to the
// core's layout (one copy each), call mh::mha_forward / mh::mha_backward,
// convert the results back. All validation happens in R before this.
#include <Rcpp.h>

#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/dropout_rng.h"
#include "core/dense.h"
#include "core/mha.h"
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

// Weight slots in the order of `weights` below (Keras's order, gate in place).
enum Slot { WQ, BQ, WK, BK, WG, BG, WV, BV, WO, BO, N_SLOTS };

// The ten weight slots converted to the core's layout and type once, kept by
// the layer between calls (R caches the external pointer with its weights,
// see mha_core_weights() in R/layer-multi-head-attention.R): a call then
// skips converting them.
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

template <class T>
Rcpp::List run_mha(SEXP query, SEXP key, SEXP value, const Rcpp::IntegerVector& q_order,
                   const Rcpp::IntegerVector& kv_order, const Rcpp::IntegerVector& dims,
                   const Rcpp::List& weights, SEXP core_weights, SEXP mask,
                   const Rcpp::IntegerVector& mask_bn,
                   SEXP qmask, SEXP kmask, bool causal, int window, double dropout_rate,
                   double dropout_seed, double dropout_counter, bool return_scores, bool flash,
                   int threads,
                   const Rcpp::IntegerVector& out_dims, const Rcpp::IntegerVector& out_order,
                   const Rcpp::IntegerVector& scores_dims, SEXP grad_output) {
  mh::MhaDims d;
  d.B = dims[0]; d.T = dims[1]; d.S = dims[2]; d.E = dims[3]; d.Dk = dims[4]; d.Dv = dims[5];
  d.N = dims[6]; d.H = dims[7]; d.Hv = dims[8]; d.O = dims[9];

  std::vector<mh::Buffer<T>> wbuf(N_SLOTS);
  const T* wp[N_SLOTS] = {nullptr};
  size_t wsize[N_SLOTS] = {0};
  const CoreWeights* cw = usable_core_weights<T>(core_weights, weights);
  for (int i = 0; i < N_SLOTS; ++i) {
    if (Rf_isNull(weights[i])) continue;
    if (cw) {
      wp[i] = core_slots<T>(*cw)[i].data();
      wsize[i] = core_slots<T>(*cw)[i].size();
    } else {
      wbuf[i] = weight_to_core<T>(weights[i]);
      wp[i] = wbuf[i].data();
      wsize[i] = wbuf[i].size();
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
  if (!Rf_isNull(kmask)) m.kmask = INTEGER(kmask);
  m.causal = causal;
  m.window = window;

  mh::DropoutSpec drop;
  drop.rate = dropout_rate;
  drop.key = mh::dropout_key(static_cast<uint64_t>(dropout_seed),
                             static_cast<uint64_t>(dropout_counter));

  const bool backward = !Rf_isNull(grad_output);
  // The flash call without scores reads the R arrays and writes the R output
  // (and, with grad_output, reads it and writes the input gradients)
  // directly (mh::mha_forward_colmajor, mh::mha_forward_backward_colmajor):
  // no converted copies.
  const int rq = Rf_length(Rf_getAttrib(query, R_DimSymbol));
  const int rkv = Rf_length(Rf_getAttrib(value, R_DimSymbol));
  if (flash && !return_scores && (!backward || TYPEOF(grad_output) == REALSXP) &&
      TYPEOF(query) == REALSXP &&
      TYPEOF(key) == REALSXP && TYPEOF(value) == REALSXP && rq == q_order.size() &&
      rkv == kv_order.size() && Rf_length(Rf_getAttrib(key, R_DimSymbol)) == rkv &&
      keeps_tail(q_order, rq - 1) && keeps_tail(kv_order, rkv - 1) &&
      keeps_tail(out_order, rq - 1)) {
    bool same_rows = true;  // the output's rows are the query's
    for (int k = 0; k < rq - 1; ++k) same_rows = same_rows && out_order[k] == q_order[k];
    if (same_rows) {
      const std::vector<idx> q_row = core_row_of(mhglue::r_dims(query), rq - 1, q_order);
      const std::vector<idx> kv_row = core_row_of(mhglue::r_dims(value), rkv - 1, kv_order);
      // Output features: the core orders them row-major, R column-major.
      std::vector<idx> out_col;
      const int n_out_axes = out_dims.size() - (rq - 1);
      if (n_out_axes > 1) {
        std::vector<idx> fd(n_out_axes);
        Rcpp::IntegerVector natural(n_out_axes);
        for (int k = 0; k < n_out_axes; ++k) {
          fd[k] = out_dims[rq - 1 + k];
          natural[k] = k;
        }
        const std::vector<idx> core_of_col = core_row_of(fd, n_out_axes, natural);
        out_col.resize(core_of_col.size());
        for (size_t c = 0; c < core_of_col.size(); ++c) out_col[core_of_col[c]] = static_cast<idx>(c);
      }
      Rcpp::NumericVector out = mhglue::fresh_numeric(
          static_cast<R_xlen_t>(mhglue::checked_count({d.B, d.T, d.O}, "the attention output")));
      mh::MhaColumnMajorIO io;
      io.check_finite = true;  // NA/NaN/Inf found while converting (NonFiniteInput)
      io.xq = REAL(query);
      io.xk = REAL(key);
      io.xv = REAL(value);
      io.q_row = q_row.data();
      io.kv_row = kv_row.data();
      io.out = REAL(out);
      io.out_col = out_col.empty() ? nullptr : out_col.data();
      if (!backward) {
        mh::mha_forward_colmajor(d, io, w, m, drop, threads);
        out.attr("dim") = out_dims;
        return Rcpp::List::create(Rcpp::Named("output") = out, Rcpp::Named("scores") = R_NilValue,
                                  Rcpp::Named("grads") = R_NilValue);
      }
      // With grad_output: dL/dquery, dL/dkey, dL/dvalue written straight
      // into R arrays (three of them even when the inputs are one array; R
      // sums them as the converted path's callers do).
      Rcpp::IntegerVector qd(Rf_getAttrib(query, R_DimSymbol));
      Rcpp::IntegerVector kd(Rf_getAttrib(key, R_DimSymbol));
      Rcpp::IntegerVector vd(Rf_getAttrib(value, R_DimSymbol));
      Rcpp::NumericVector gq = mhglue::fresh_numeric(Rf_xlength(query)),
                          gk = mhglue::fresh_numeric(Rf_xlength(key)),
                          gv = mhglue::fresh_numeric(Rf_xlength(value));
      std::vector<mh::Buffer<T>> dw(N_SLOTS);
      for (int i = 0; i < N_SLOTS; ++i) dw[i].resize(wsize[i]);
      auto ptr = [&](int i) { return wp[i] ? dw[i].data() : nullptr; };
      mh::MhaGrads<T> g;
      g.dwq = ptr(WQ); g.dbq = ptr(BQ); g.dwk = ptr(WK); g.dbk = ptr(BK); g.dwg = ptr(WG);
      g.dbg = ptr(BG); g.dwv = ptr(WV); g.dbv = ptr(BV); g.dwo = ptr(WO); g.dbo = ptr(BO);
      mh::MhaColumnMajorGrads cg;
      cg.dout = REAL(grad_output);
      cg.dxq = REAL(gq);
      cg.dxk = REAL(gk);
      cg.dxv = REAL(gv);
      mh::mha_forward_backward_colmajor(d, io, w, m, drop, cg, g, threads);
      Rcpp::List wgrads(N_SLOTS);
      for (int i = 0; i < N_SLOTS; ++i) {
        if (wp[i]) wgrads[i] = weight_from_core(dw[i].data(), weights[i]);
      }
      out.attr("dim") = out_dims;
      gq.attr("dim") = qd;
      gk.attr("dim") = kd;
      gv.attr("dim") = vd;
      return Rcpp::List::create(
          Rcpp::Named("output") = out, Rcpp::Named("scores") = R_NilValue,
          Rcpp::Named("grads") = Rcpp::List::create(Rcpp::Named("query") = gq,
                                                    Rcpp::Named("key") = gk,
                                                    Rcpp::Named("value") = gv,
                                                    Rcpp::Named("weights") = wgrads));
    }
  }

  // Inputs: shared arrays (self-attention, key = value) are converted once.
  // The converted path scans its inputs here (the column-major path checks
  // them while converting); each array once, in the order of NonFiniteInput.
  auto scan = [&](SEXP x, mh::NonFiniteInput::Input which) {
    if (!cpp_all_finite(x, threads)) throw mh::NonFiniteInput(which);
  };
  scan(query, mh::NonFiniteInput::kQuery);
  if (value != query) scan(value, mh::NonFiniteInput::kValue);
  if (key != value && key != query) scan(key, mh::NonFiniteInput::kKey);
  if (backward) scan(grad_output, mh::NonFiniteInput::kOutputGradient);

  mh::Buffer<T> xq = to_core<T>(query, q_order, threads);
  mh::Buffer<T> xv_own, xk_own;
  const T* xv;
  const T* xk;
  if (value == query && same_order(kv_order, q_order)) {
    xv = xq.data();
  } else {
    xv_own = to_core<T>(value, kv_order, threads);
    xv = xv_own.data();
  }
  if (key == value) {
    xk = xv;
  } else if (key == query && same_order(kv_order, q_order)) {
    xk = xq.data();
  } else {
    xk_own = to_core<T>(key, kv_order, threads);
    xk = xk_own.data();
  }

  mh::Buffer<T> out(static_cast<size_t>(mhglue::checked_count({d.B, d.T, d.O}, "the attention output")));
  mh::Buffer<T> scores_own;
  mh::MhaCache<T> cache;
  if (return_scores) mhglue::checked_count({d.B, d.N, d.T, d.S}, "the attention scores");
  if (return_scores && !backward) scores_own.resize(static_cast<size_t>(d.B * d.N * d.T * d.S));
  mh::mha_forward(d, xq.data(), xk, xv, w, m, drop, flash && !return_scores, threads, out.data(),
                  scores_own.empty() ? nullptr : scores_own.data(), backward ? &cache : nullptr);

  Rcpp::List result = Rcpp::List::create(Rcpp::Named("output") = R_NilValue,
                                         Rcpp::Named("scores") = R_NilValue,
                                         Rcpp::Named("grads") = R_NilValue);
  // Large buffers go as soon as they are converted; with a backward pass the
  // output is converted after it (the float copy is the smaller one).
  auto convert_output = [&]() {
    result["output"] = from_core(out.data(), out_dims, out_order, threads);
    mh::Buffer<T>().swap(out);
  };
  if (!backward) convert_output();
  if (return_scores) {
    Rcpp::IntegerVector natural(scores_dims.size());
    for (int k = 0; k < natural.size(); ++k) natural[k] = k;
    const T* p = backward ? cache.probs.data() : scores_own.data();
    result["scores"] = from_core(p, scores_dims, natural, threads);
    mh::Buffer<T>().swap(scores_own);
  }
  if (!backward) return result;

  mh::Buffer<T> dout = to_core<T>(grad_output, out_order, threads);
  mh::Buffer<T> dxq(xq.size()), dxk(static_cast<size_t>(mhglue::checked_count({d.B, d.S, d.Dk}, "dL/dkey"))),
      dxv(static_cast<size_t>(mhglue::checked_count({d.B, d.S, d.Dv}, "dL/dvalue")));
  std::vector<mh::Buffer<T>> dw(N_SLOTS);
  for (int i = 0; i < N_SLOTS; ++i) dw[i].resize(wsize[i]);
  auto ptr = [&](int i) { return wp[i] ? dw[i].data() : nullptr; };
  mh::MhaGrads<T> g;
  g.dxq = dxq.data(); g.dxk = dxk.data(); g.dxv = dxv.data();
  g.dwq = ptr(WQ); g.dbq = ptr(BQ); g.dwk = ptr(WK); g.dbk = ptr(BK); g.dwg = ptr(WG);
  g.dbg = ptr(BG); g.dwv = ptr(WV); g.dbv = ptr(BV); g.dwo = ptr(WO); g.dbo = ptr(BO);
  mh::mha_backward(d, xq.data(), xk, xv, w, m, drop, cache, dout.data(), g, threads);
  // Free each core buffer before the next R array is allocated.
  mh::Buffer<T>().swap(dout);
  mh::Buffer<T>().swap(xq);
  mh::Buffer<T>().swap(xk_own);
  mh::Buffer<T>().swap(xv_own);

  Rcpp::List wgrads(N_SLOTS);
  for (int i = 0; i < N_SLOTS; ++i) {
    if (wp[i]) wgrads[i] = weight_from_core(dw[i].data(), weights[i]);
  }
  Rcpp::IntegerVector qd(Rf_getAttrib(query, R_DimSymbol));
  Rcpp::IntegerVector kd(Rf_getAttrib(key, R_DimSymbol));
  Rcpp::IntegerVector vd(Rf_getAttrib(value, R_DimSymbol));
  Rcpp::NumericVector gq = from_core(dxq.data(), qd, q_order, threads);
  mh::Buffer<T>().swap(dxq);
  Rcpp::NumericVector gk = from_core(dxk.data(), kd, kv_order, threads);
  mh::Buffer<T>().swap(dxk);
  Rcpp::NumericVector gv = from_core(dxv.data(), vd, kv_order, threads);
  mh::Buffer<T>().swap(dxv);
  convert_output();
  result["grads"] = Rcpp::List::create(Rcpp::Named("query") = gq, Rcpp::Named("key") = gk,
                                       Rcpp::Named("value") = gv,
                                       Rcpp::Named("weights") = wgrads);
  return result;
}

}  // namespace

// Forward (and, when grad_output is not NULL, backward) of one attention call.
// dims = (B, T, S, E, Dk, Dv, N, H, Hv, O) in the core's flattened sense;
// q_order / kv_order / out_order: 0-based Keras axes in core order;
// weights: 10 slots (Wq, bq, Wk, bk, Wg, bg, Wv, bv, Wo, bo), NULL if absent.
// flash: use the flash kernel (ignored when return_scores).
// [[Rcpp::export]]
Rcpp::List cpp_mha_call(SEXP query, SEXP key, SEXP value, Rcpp::IntegerVector q_order,
                        Rcpp::IntegerVector kv_order, Rcpp::IntegerVector dims,
                        Rcpp::List weights, SEXP core_weights, SEXP mask,
                        Rcpp::IntegerVector mask_bn, SEXP qmask,
                        SEXP kmask, bool causal, int window, double dropout_rate,
                        double dropout_seed, double dropout_counter, bool return_scores,
                        bool flash, bool float64, int threads, Rcpp::IntegerVector out_dims,
                        Rcpp::IntegerVector out_order, Rcpp::IntegerVector scores_dims,
                        SEXP grad_output) {
  return mhglue::out_of_memory_as_error([&]() -> Rcpp::List {
    // An input with NA/NaN/Inf: R reports it, naming the argument
    // (nonfinite: 1 query, 2 value, 3 key, 4 grad_output).
    try {
      if (float64) {
        return run_mha<double>(query, key, value, q_order, kv_order, dims, weights, core_weights,
                             mask, mask_bn,
                             qmask, kmask, causal, window, dropout_rate, dropout_seed,
                             dropout_counter, return_scores, flash, threads, out_dims, out_order,
                             scores_dims, grad_output);
      }
      return run_mha<float>(query, key, value, q_order, kv_order, dims, weights, core_weights, mask,
                            mask_bn, qmask,
                            kmask, causal, window, dropout_rate, dropout_seed, dropout_counter,
                            return_scores, flash, threads, out_dims, out_order, scores_dims, grad_output);
    } catch (const mh::NonFiniteInput& e) {
      return Rcpp::List::create(Rcpp::Named("nonfinite") = static_cast<int>(e.input) + 1);
    }
  });
}

// The layer's ten weight slots (NULL where absent) converted for the core
// (see CoreWeights): an external pointer of class "multihead_core_weights".
// [[Rcpp::export]]
SEXP cpp_mha_core_weights(Rcpp::List weights, bool float64) {
  if (weights.size() != N_SLOTS) Rcpp::stop("cpp_mha_core_weights: expected 10 weight slots");
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
