// Rcpp glue of the Attention and AdditiveAttention layers
// (core/attention_score_layers.h): R arrays (B, T, features) are copied once
// to the core's row-major layout in the layer's dtype, results copied back.
// Validation of user input happens in R (R/layer-attention.R) first.
#include <Rcpp.h>

#include <cstdint>
#include <vector>

#include "core/attention_score_layers.h"
#include "core/dropout_rng.h"
#include "glue_convert.h"

using mh::idx;
using mhglue::from_core;
using mhglue::r_dims;
using mhglue::to_core;

namespace {

Rcpp::IntegerVector natural3() { return Rcpp::IntegerVector::create(0, 1, 2); }

// The core's parameters, with typed copies of the scale and the masks held
// by the caller.
template <class T>
struct ScoreCall {
  mh::ScoreLayerDims dims{};
  mh::ScoreLayerParams<T> params;
  mh::Buffer<T> scale;
  mh::Buffer<int32_t> qmask, vmask;

  ScoreCall(SEXP query, SEXP value, int mode, SEXP scale_r, double concat_weight, SEXP query_mask,
            SEXP value_mask, bool causal, double rate, double seed, double counter) {
    const std::vector<idx> qd = r_dims(query), vd = r_dims(value);
    if (qd.size() != 3 || vd.size() != 3) Rcpp::stop("internal: attention inputs must be rank 3");
    dims = mh::ScoreLayerDims{qd[0], qd[1], vd[1], qd[2], vd[2]};
    params.mode = static_cast<mh::ScoreMode>(mode);
    if (!Rf_isNull(scale_r)) {
      const R_xlen_t n = Rf_xlength(scale_r);
      scale.resize(static_cast<size_t>(n));
      for (R_xlen_t i = 0; i < n; ++i) scale[i] = static_cast<T>(REAL(scale_r)[i]);
      params.scale = scale.data();
    }
    params.concat_weight = static_cast<T>(concat_weight);
    const Rcpp::IntegerVector order2 = Rcpp::IntegerVector::create(0, 1);
    if (!Rf_isNull(query_mask)) {
      qmask = to_core<int32_t>(query_mask, order2);
      params.qmask = qmask.data();
    }
    if (!Rf_isNull(value_mask)) {
      vmask = to_core<int32_t>(value_mask, order2);
      params.vmask = vmask.data();
    }
    params.causal = causal;
    params.rate = rate;
    params.key = mh::dropout_key(static_cast<uint64_t>(seed), static_cast<uint64_t>(counter));
  }
};

template <class F>
auto with_dtype(bool float64, F f) {
  return mhglue::out_of_memory_as_error([&]() {
    try {
      return float64 ? f(0.0) : f(0.0f);
    } catch (const mh::ScoreOverflow&) {
      throw multihead_error(
          std::string("multihead: the attention scores overflow ") + (float64 ? "float64" : "float32") +
          " (the query and key values are too large)" +
          (float64 ? "." : "; use dtype = \"float64\" or smaller inputs."));
    }
  });
}

// The row-major core buffer `buf` (B, T, C) as an R array of those dims.
template <class T>
Rcpp::NumericVector as_r_array(const mh::Buffer<T>& buf, idx B, idx T1, idx C) {
  const Rcpp::IntegerVector dims =
      Rcpp::IntegerVector::create(static_cast<int>(B), static_cast<int>(T1), static_cast<int>(C));
  return from_core(buf.data(), dims, natural3());
}

}  // namespace

// Forward. query (B, Tq, D), key (B, Tv, D) or NULL (the value is the key),
// value (B, Tv, Dv): R arrays;
// mode 0 dot, 1 concat, 2 additive; scale NULL or its values; masks NULL or
// logical (B, Tq) / (B, Tv). Returns list(output (B, Tq, Dv), weights
// (B, Tq, Tv) or NULL, probs: the pre-dropout probabilities in core layout
// (a plain vector) or NULL).
// [[Rcpp::export]]
Rcpp::List cpp_score_attention_forward(SEXP query, SEXP key, SEXP value, int mode, SEXP scale,
                                       double concat_weight, SEXP query_mask, SEXP value_mask,
                                       bool causal, double rate, double seed, double counter,
                                       bool want_weights, bool keep_probs, bool float64,
                                       int threads) {
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    ScoreCall<T> c(query, value, mode, scale, concat_weight, query_mask, value_mask, causal, rate,
                   seed, counter);
    const mh::ScoreLayerDims& d = c.dims;
    const bool shared = Rf_isNull(key);
    mh::Buffer<T> q = to_core<T>(query, natural3(), threads);
    mh::Buffer<T> k, v = to_core<T>(value, natural3(), threads);
    if (!shared) k = to_core<T>(key, natural3(), threads);
    const T* kp = shared ? v.data() : k.data();
    const idx TT = mhglue::checked_count({d.B, d.Tq, d.Tv}, "the attention weights");
    mh::Buffer<T> out(static_cast<size_t>(mhglue::checked_count({d.B, d.Tq, d.Dv}, "the output")));
    mh::Buffer<T> weights, probs;
    if (want_weights) weights.resize(static_cast<size_t>(TT));
    if (keep_probs) probs.resize(static_cast<size_t>(TT));
    mh::score_attention_forward(d, c.params, q.data(), kp, v.data(), out.data(),
                                want_weights ? weights.data() : nullptr,
                                keep_probs ? probs.data() : nullptr, threads);
    Rcpp::List res = Rcpp::List::create(
        Rcpp::Named("output") = as_r_array(out, d.B, d.Tq, d.Dv),
        Rcpp::Named("weights") = R_NilValue, Rcpp::Named("probs") = R_NilValue);
    if (want_weights) res["weights"] = as_r_array(weights, d.B, d.Tq, d.Tv);
    if (keep_probs) {
      Rcpp::NumericVector pr(Rcpp::no_init(static_cast<R_xlen_t>(TT)));
      for (idx i = 0; i < TT; ++i) pr[i] = static_cast<double>(probs[i]);
      res["probs"] = pr;
    }
    return res;
  });
}

// Backward. The arguments of the forward, its `probs`, grad_output
// (B, Tq, Dv) and grad_weights (B, Tq, Tv) or NULL. Returns list(query,
// key (NULL when no key was given: its gradient is added to value's), value,
// scale (NULL without a scale), concat_weight (NULL unless concat)).
// [[Rcpp::export]]
Rcpp::List cpp_score_attention_backward(SEXP query, SEXP key, SEXP value, int mode, SEXP scale,
                                        double concat_weight, SEXP query_mask, SEXP value_mask,
                                        bool causal, double rate, double seed, double counter,
                                        Rcpp::NumericVector probs, SEXP grad_output,
                                        SEXP grad_weights, bool float64, int threads) {
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    ScoreCall<T> c(query, value, mode, scale, concat_weight, query_mask, value_mask, causal, rate,
                   seed, counter);
    const mh::ScoreLayerDims& d = c.dims;
    const bool shared = Rf_isNull(key);
    mh::Buffer<T> q = to_core<T>(query, natural3(), threads);
    mh::Buffer<T> k, v = to_core<T>(value, natural3(), threads);
    if (!shared) k = to_core<T>(key, natural3(), threads);
    const T* kp = shared ? v.data() : k.data();
    const idx TT = mhglue::checked_count({d.B, d.Tq, d.Tv}, "the attention weights");
    if (probs.size() != TT) Rcpp::stop("internal: probs do not match the inputs");
    mh::Buffer<T> pr(static_cast<size_t>(TT));
    for (idx i = 0; i < TT; ++i) pr[i] = static_cast<T>(probs[i]);
    mh::Buffer<T> go = to_core<T>(grad_output, natural3(), threads), gw;
    if (!Rf_isNull(grad_weights)) gw = to_core<T>(grad_weights, natural3(), threads);
    mh::Buffer<T> dq(q.size()), dk(static_cast<size_t>(d.B * d.Tv * d.D)), dv(v.size());
    const idx n_scale = Rf_isNull(scale) ? 0 : Rf_xlength(scale);
    mh::Buffer<T> dscale(static_cast<size_t>(n_scale > 0 ? n_scale : 1)), dconcat(1);
    mh::score_attention_backward(d, c.params, q.data(), kp, v.data(), pr.data(), go.data(),
                                 gw.empty() ? nullptr : gw.data(), dq.data(), dk.data(), dv.data(),
                                 dscale.data(), dconcat.data(), threads);
    if (shared) {
      for (idx i = 0; i < static_cast<idx>(dv.size()); ++i) dv[i] += dk[i];
    }
    Rcpp::List res = Rcpp::List::create(
        Rcpp::Named("query") = as_r_array(dq, d.B, d.Tq, d.D), Rcpp::Named("key") = R_NilValue,
        Rcpp::Named("value") = as_r_array(dv, d.B, d.Tv, d.Dv), Rcpp::Named("scale") = R_NilValue,
        Rcpp::Named("concat_weight") = R_NilValue);
    if (!shared) res["key"] = as_r_array(dk, d.B, d.Tv, d.D);
    if (n_scale > 0) {
      Rcpp::NumericVector s(n_scale);
      for (idx f = 0; f < n_scale; ++f) s[f] = static_cast<double>(dscale[f]);
      res["scale"] = s;
    }
    if (mode == static_cast<int>(mh::ScoreMode::Concat)) res["concat_weight"] = static_cast<double>(dconcat[0]);
    return res;
  });
}
