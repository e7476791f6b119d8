// Rcpp glue for the reduction, softmax-family and cumulative ops
// (R/ops-reduce.R): the core reads R's column-major arrays in place (see
// core/ops_reduce.h), so no conversion copies are made. `dims` are the
// array's dims in Keras's axis order (the first fastest) and `reduced` flags
// the reduced axes (0/1, one per axis). All validation of user input happens
// in R; mismatches here are internal errors.
#include <Rcpp.h>

#include <cstdint>
#include <vector>

#include "core/ops_reduce.h"
#include "glue_convert.h"

using mh::idx;

namespace {

mh::ReducePlan plan_for(SEXP x, const Rcpp::IntegerVector& dims, const Rcpp::IntegerVector& reduced) {
  if (dims.size() != reduced.size()) Rcpp::stop("internal: `reduced` does not match `dims`");
  std::vector<idx> d(dims.begin(), dims.end());
  std::vector<int> r(reduced.begin(), reduced.end());
  const idx n = mhglue::checked_count(d, "an array to reduce");
  if (n != static_cast<idx>(Rf_xlength(x))) Rcpp::stop("internal: `dims` do not match the array's length");
  return mh::make_reduce_plan(d, r);
}

void check_numeric(SEXP x) {
  if (TYPEOF(x) != REALSXP && TYPEOF(x) != INTSXP && TYPEOF(x) != LGLSXP) {
    Rcpp::stop("internal: expected a numeric or logical array");
  }
}

void check_length(SEXP v, idx n, const char* what) {
  if (TYPEOF(v) != REALSXP || static_cast<idx>(Rf_xlength(v)) != n) {
    Rcpp::stop(std::string("internal: `") + what + "` has the wrong type or length");
  }
}

// (outer, len, inner) of a cumulative op along 0-based `axis` of `dims`.
void line_sizes(const Rcpp::IntegerVector& dims, int axis, idx* outer, idx* len, idx* inner) {
  if (axis < 0 || axis >= dims.size()) Rcpp::stop("internal: cumulative axis out of range");
  std::vector<idx> before(dims.begin(), dims.begin() + axis), after(dims.begin() + axis + 1, dims.end());
  *inner = mhglue::checked_count(before, "an array");
  *outer = mhglue::checked_count(after, "an array");
  *len = dims[axis];
}

}  // namespace

// The reduction `op` (mh::ReduceOp code) of x (double, integer or logical)
// over the flagged axes: a double vector of the outputs, in the column-major
// order of the kept axes. `p`: the order of a p-norm.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_reduce(SEXP x, Rcpp::IntegerVector dims, Rcpp::IntegerVector reduced, int op,
                               double p, int threads) {
  check_numeric(x);
  const mh::ReduceOp code = mh::reduce_op_from_code(op);
  return mhglue::out_of_memory_as_error([&]() {
    const mh::ReducePlan plan = plan_for(x, dims, reduced);
    Rcpp::NumericVector out(Rcpp::no_init(static_cast<R_xlen_t>(plan.outputs())));
    if (TYPEOF(x) == REALSXP) {
      mh::reduce_forward(code, REAL(x), plan, p, REAL(out), threads);
    } else {
      mh::reduce_forward(code, reinterpret_cast<const int32_t*>(INTEGER(x)), plan, p, REAL(out), threads);
    }
    return out;
  });
}

// The gradient of sum(g * reduce(x)) with respect to x (double), given the
// forward's output `out`: a double vector of length(x) (no dim).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_reduce_backward(Rcpp::NumericVector x, Rcpp::IntegerVector dims,
                                        Rcpp::IntegerVector reduced, int op, double p,
                                        Rcpp::NumericVector out, Rcpp::NumericVector g, int threads) {
  const mh::ReduceOp code = mh::reduce_op_from_code(op);
  return mhglue::out_of_memory_as_error([&]() {
    const mh::ReducePlan plan = plan_for(x, dims, reduced);
    check_length(out, plan.outputs(), "out");
    check_length(g, plan.outputs(), "g");
    Rcpp::NumericVector dx = mhglue::fresh_numeric(Rf_xlength(x));
    mh::reduce_backward(code, REAL(x), plan, p, REAL(out), REAL(g), REAL(dx), threads);
    return dx;
  });
}

// Softmax (log = FALSE) or log-softmax of x (double) over the flagged axes:
// a double vector of length(x) (no dim).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_softmax(Rcpp::NumericVector x, Rcpp::IntegerVector dims, Rcpp::IntegerVector reduced,
                                bool log, int threads) {
  return mhglue::out_of_memory_as_error([&]() {
    const mh::ReducePlan plan = plan_for(x, dims, reduced);
    Rcpp::NumericVector y = mhglue::fresh_numeric(Rf_xlength(x));
    mh::softmax_forward(REAL(x), plan, log, REAL(y), threads);
    return y;
  });
}

// [[Rcpp::export]]
Rcpp::NumericVector cpp_softmax_backward(Rcpp::NumericVector y, Rcpp::NumericVector g, Rcpp::IntegerVector dims,
                                         Rcpp::IntegerVector reduced, bool log, int threads) {
  return mhglue::out_of_memory_as_error([&]() {
    const mh::ReducePlan plan = plan_for(y, dims, reduced);
    check_length(g, plan.n, "g");
    Rcpp::NumericVector dx = mhglue::fresh_numeric(Rf_xlength(y));
    mh::softmax_backward(REAL(y), REAL(g), plan, log, REAL(dx), threads);
    return dx;
  });
}

// Cumulative sum (prod = FALSE) or product of x (double, integer or logical)
// along the 0-based `axis` of `dims`: a double vector of length(x).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_cumulative(SEXP x, Rcpp::IntegerVector dims, int axis, bool prod, int threads) {
  check_numeric(x);
  return mhglue::out_of_memory_as_error([&]() {
    idx outer, len, inner;
    line_sizes(dims, axis, &outer, &len, &inner);
    const idx n = mhglue::checked_count({outer, len, inner}, "an array");
    if (n != static_cast<idx>(Rf_xlength(x))) Rcpp::stop("internal: `dims` do not match the array's length");
    Rcpp::NumericVector y = mhglue::fresh_numeric(Rf_xlength(x));
    if (TYPEOF(x) == REALSXP) {
      mh::cumulative_forward(REAL(x), outer, len, inner, prod, REAL(y), threads);
    } else {
      mh::cumulative_forward(reinterpret_cast<const int32_t*>(INTEGER(x)), outer, len, inner, prod, REAL(y),
                             threads);
    }
    return y;
  });
}

// [[Rcpp::export]]
Rcpp::NumericVector cpp_cumulative_backward(Rcpp::NumericVector x, Rcpp::NumericVector y, Rcpp::NumericVector g,
                                            Rcpp::IntegerVector dims, int axis, bool prod, int threads) {
  return mhglue::out_of_memory_as_error([&]() {
    idx outer, len, inner;
    line_sizes(dims, axis, &outer, &len, &inner);
    const idx n = mhglue::checked_count({outer, len, inner}, "an array");
    if (n != static_cast<idx>(Rf_xlength(x))) Rcpp::stop("internal: `dims` do not match the array's length");
    check_length(y, n, "y");
    check_length(g, n, "g");
    Rcpp::NumericVector dx = mhglue::fresh_numeric(Rf_xlength(x));
    mh::cumulative_backward(REAL(x), REAL(y), REAL(g), outer, len, inner, prod, REAL(dx), threads);
    return dx;
  });
}
