// Rcpp glue for the linear-algebra ops (R/ops-linalg.R): check the sizes,
// call the core (core/ops_linalg.h), return R vectors (the R side sets dims).
// Operands arrive as double vectors (R converts integers and logicals
// first) and are read in place; plans arrive flattened into one double
// vector (see decode_gather() / decode_contraction()).
#include <Rcpp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <string>
#include <vector>

#include "core/ops_linalg.h"
#include "glue_convert.h"

using mh::idx;

namespace {

template <class F>
auto with_dtype(bool float64, F f) {
  return mhglue::out_of_memory_as_error([&]() { return float64 ? f(0.0) : f(0.0f); });
}

// Reads a flattened plan: a cursor over a double vector.
struct PlanReader {
  const double* p;
  R_xlen_t n, at = 0;
  explicit PlanReader(const Rcpp::NumericVector& v) : p(v.begin()), n(v.size()) {}
  idx next() {
    if (at >= n) Rcpp::stop("internal: truncated linalg plan");
    const double v = p[at++];
    if (!(v >= 0 && v <= 4503599627370496.0)) Rcpp::stop("internal: bad value in a linalg plan");
    return static_cast<idx>(v);
  }
  std::vector<idx> many(idx k) {
    std::vector<idx> out(static_cast<size_t>(k));
    for (auto& v : out) v = next();
    return out;
  }
};

// A gather plan: r, dims[r], steps[r], kept, summed, source_size.
mh::GatherPlan decode_gather(PlanReader& r) {
  mh::GatherPlan g;
  const idx rank = r.next();
  g.dims = r.many(rank);
  g.steps = r.many(rank);
  g.kept = r.next();
  g.summed = r.next();
  g.source_size = r.next();
  return g;
}

// A contraction plan: gather a, gather b, rows, inner, cols, batch, r,
// out_dims[r], out_steps[r].
mh::ContractionPlan decode_contraction(const Rcpp::NumericVector& v) {
  PlanReader r(v);
  mh::ContractionPlan c;
  c.a = decode_gather(r);
  c.b = decode_gather(r);
  c.rows = r.next();
  c.inner = r.next();
  c.cols = r.next();
  c.batch = r.next();
  const idx rank = r.next();
  c.out_dims = r.many(rank);
  c.out_steps = r.many(rank);
  if (r.at != r.n) Rcpp::stop("internal: linalg plan too long");
  return c;
}

void check_length(SEXP x, idx n, const char* what) {
  if (TYPEOF(x) != REALSXP) Rcpp::stop(std::string("internal: ") + what + " must be a double vector");
  if (static_cast<idx>(Rf_xlength(x)) != n)
    Rcpp::stop(std::string("internal: ") + what + " does not have the planned size");
}

}  // namespace

// The contraction of x1 and x2 (doubles) by `plan`; a double vector of the
// output's size (no dims).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_contract_forward(SEXP x1, SEXP x2, Rcpp::NumericVector plan, bool float64,
                                         int threads) {
  const mh::ContractionPlan c = decode_contraction(plan);
  check_length(x1, c.a.source_size, "x1");
  check_length(x2, c.b.source_size, "x2");
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    c.check();
    Rcpp::NumericVector out = mhglue::fresh_numeric(static_cast<R_xlen_t>(c.out_size()));
    mh::contraction_forward<T>(REAL(x1), REAL(x2), c, REAL(out), threads);
    return out;
  });
}

// Gradients of a contraction: list(x1 =, x2 =) (double vectors of the
// operands' sizes, or NULL where need1/need2 is FALSE).
// [[Rcpp::export]]
Rcpp::List cpp_contract_backward(SEXP x1, SEXP x2, SEXP grad, Rcpp::NumericVector plan,
                                 bool need1, bool need2, bool float64, int threads) {
  const mh::ContractionPlan c = decode_contraction(plan);
  check_length(x1, c.a.source_size, "x1");
  check_length(x2, c.b.source_size, "x2");
  check_length(grad, c.out_size(), "the output gradient");
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    c.check();
    Rcpp::NumericVector d1, d2;
    if (need1) d1 = mhglue::fresh_numeric(static_cast<R_xlen_t>(c.a.source_size));
    if (need2) d2 = mhglue::fresh_numeric(static_cast<R_xlen_t>(c.b.source_size));
    mh::contraction_backward<T>(REAL(x1), REAL(x2), REAL(grad), c, need1 ? REAL(d1) : nullptr,
                                need2 ? REAL(d2) : nullptr, threads);
    return Rcpp::List::create(Rcpp::Named("x1") = need1 ? Rcpp::RObject(d1) : Rcpp::RObject(R_NilValue),
                              Rcpp::Named("x2") = need2 ? Rcpp::RObject(d2) : Rcpp::RObject(R_NilValue));
  });
}

// One operand gathered and summed by `plan` (the one-operand einsum).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_gather_forward(SEXP x, Rcpp::NumericVector plan, bool float64, int threads) {
  PlanReader r(plan);
  const mh::GatherPlan g = decode_gather(r);
  g.check("einsum plan");
  check_length(x, g.source_size, "x");
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    Rcpp::NumericVector out = mhglue::fresh_numeric(static_cast<R_xlen_t>(g.kept));
    if constexpr (std::is_same<T, double>::value) {
      mh::gather_reduce<double>(REAL(x), g, REAL(out), threads);
    } else {
      mh::Buffer<T> o(static_cast<size_t>(g.kept));
      mh::gather_reduce<T>(REAL(x), g, o.data(), threads);
      std::copy(o.begin(), o.end(), out.begin());
    }
    return out;
  });
}

// Its adjoint: grad (kept) -> the operand's gradient.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_gather_backward(SEXP grad, Rcpp::NumericVector plan, bool float64,
                                        int threads) {
  PlanReader r(plan);
  const mh::GatherPlan g = decode_gather(r);
  g.check("einsum plan");
  check_length(grad, g.kept, "the output gradient");
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    Rcpp::NumericVector out = mhglue::fresh_numeric(static_cast<R_xlen_t>(g.source_size));
    if constexpr (std::is_same<T, double>::value) {
      mh::gather_reduce_backward<double>(REAL(grad), g, REAL(out), threads);
    } else {
      // float32: the gradient is rounded like the op's other float values.
      mh::Buffer<T> gt(static_cast<size_t>(g.kept));
      const double* gp = REAL(grad);
      for (size_t i = 0; i < gt.size(); ++i) gt[i] = static_cast<T>(gp[i]);
      mh::gather_reduce_backward<T>(gt.data(), g, REAL(out), threads);
    }
    return out;
  });
}

namespace {

mh::DpaShape dpa_shape(SEXP q, SEXP k, SEXP v) {
  const std::vector<idx> qd = mhglue::r_dims(q), kd = mhglue::r_dims(k), vd = mhglue::r_dims(v);
  if (qd.size() != 4 || kd.size() != 4 || kd != vd)
    Rcpp::stop("internal: dot_product_attention shapes");
  mh::DpaShape s;
  s.B = qd[0];
  s.T = qd[1];
  s.N = qd[2];
  s.H = qd[3];
  s.S = kd[1];
  s.K = kd[2];
  if (kd[0] != s.B || kd[3] != s.H) Rcpp::stop("internal: dot_product_attention shapes");
  check_length(q, s.B * s.T * s.N * s.H, "query");
  check_length(k, s.B * s.S * s.K * s.H, "key");
  check_length(v, s.B * s.S * s.K * s.H, "value");
  return s;
}

// Steps of an operand of dims `d` (along B, N, T, S; each 1 or full) read
// broadcast: contiguous column-major, 0 along axes of size 1.
void broadcast_steps(const Rcpp::IntegerVector& d, const mh::DpaShape& s, idx* step, idx* dims,
                     const char* what) {
  if (d.size() != 4) Rcpp::stop("internal: %s dims", what);
  const idx full[4] = {s.B, s.N, s.T, s.S};
  idx stride = 1;
  for (int a = 0; a < 4; ++a) {
    const idx n = d[a];
    if (n != 1 && n != full[a]) Rcpp::stop("internal: %s does not broadcast", what);
    dims[a] = n;
    step[a] = n == 1 ? 0 : stride;
    stride *= n;
  }
}

mh::DpaExtras dpa_extras(const mh::DpaShape& s, SEXP bias, Rcpp::IntegerVector bias_dims, SEXP mask,
                         Rcpp::IntegerVector mask_dims, double scale, bool causal) {
  mh::DpaExtras e;
  e.scale = scale;
  e.causal = causal;
  if (!Rf_isNull(bias)) {
    broadcast_steps(bias_dims, s, e.bias_step, e.bias_dims, "bias");
    check_length(bias, e.bias_dims[0] * e.bias_dims[1] * e.bias_dims[2] * e.bias_dims[3], "bias");
    e.bias = REAL(bias);
  }
  if (!Rf_isNull(mask)) {
    idx dims[4];
    broadcast_steps(mask_dims, s, e.mask_step, dims, "mask");
    if (TYPEOF(mask) != LGLSXP || Rf_xlength(mask) != dims[0] * dims[1] * dims[2] * dims[3])
      Rcpp::stop("internal: mask must be a logical vector of the planned size");
    e.mask = reinterpret_cast<const int32_t*>(LOGICAL(mask));
  }
  return e;
}

}  // namespace

// Dot-product attention: query (B, T, N, H), key and value (B, S, K, H)
// (doubles), bias (doubles) / mask (logicals) or NULL with their dims along
// (B, N, T, S). Returns the output (B, T, N, H) as a double vector.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_dpa_forward(SEXP query, SEXP key, SEXP value, SEXP bias,
                                    Rcpp::IntegerVector bias_dims, SEXP mask,
                                    Rcpp::IntegerVector mask_dims, double scale, bool causal,
                                    bool float64, int threads) {
  const mh::DpaShape s = dpa_shape(query, key, value);
  const mh::DpaExtras e = dpa_extras(s, bias, bias_dims, mask, mask_dims, scale, causal);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    Rcpp::NumericVector out = mhglue::fresh_numeric(static_cast<R_xlen_t>(s.B * s.T * s.N * s.H));
    mh::dpa_forward<T>(REAL(query), REAL(key), REAL(value), s, e, REAL(out), threads);
    return out;
  });
}

// Its backward: list(query, key, value, bias) gradients (double vectors; bias
// NULL when there is none).
// [[Rcpp::export]]
Rcpp::List cpp_dpa_backward(SEXP query, SEXP key, SEXP value, SEXP bias,
                            Rcpp::IntegerVector bias_dims, SEXP mask, Rcpp::IntegerVector mask_dims,
                            double scale, bool causal, SEXP grad, bool float64, int threads) {
  const mh::DpaShape s = dpa_shape(query, key, value);
  const mh::DpaExtras e = dpa_extras(s, bias, bias_dims, mask, mask_dims, scale, causal);
  check_length(grad, s.B * s.T * s.N * s.H, "the output gradient");
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    Rcpp::NumericVector dq = mhglue::fresh_numeric(Rf_xlength(query)),
                        dk = mhglue::fresh_numeric(Rf_xlength(key)),
                        dv = mhglue::fresh_numeric(Rf_xlength(value)), db;
    if (!Rf_isNull(bias)) db = mhglue::fresh_numeric(Rf_xlength(bias));
    mh::dpa_backward<T>(REAL(query), REAL(key), REAL(value), s, e, REAL(grad), REAL(dq), REAL(dk),
                        REAL(dv), Rf_isNull(bias) ? nullptr : REAL(db), threads);
    return Rcpp::List::create(
        Rcpp::Named("query") = dq, Rcpp::Named("key") = dk, Rcpp::Named("value") = dv,
        Rcpp::Named("bias") = Rf_isNull(bias) ? Rcpp::RObject(R_NilValue) : Rcpp::RObject(db));
  });
}
