// Reductions, softmax-family and cumulative ops over R's own array layout
// (the kernels behind op_sum(), op_max(), op_softmax(), op_cumsum(), ...).
//
// LAYOUT. Unlike the rest of the core (row-major, see layout.h), these
// kernels read R arrays IN PLACE: an array of dims (d0, d1, ..., dk-1) is
// column-major, d0 varying fastest (Keras's axis order, batch first). A
// reduction over a set of axes is planned without transposing:
//
//   * axes of size 1 are dropped and neighbouring axes with the same role
//     (reduced or kept) are merged into RUNS, fastest first;
//   * the leading kept run (if the fastest run is kept) is INNER: it is
//     contiguous both in x and in the result, so kernels loop over it as
//     a vector;
//   * the other kept runs form OUTER (o), the reduced runs REDUCED (r).
//
// Element (o, r, i) is at x[xo(o) + xr(r) + i] where xo and xr sum the run
// strides of a multi-index (for one block of consecutive reduced axes this is
// the familiar (outer, reduced, inner) = x[(o * R + r) * I + i]). Output (o, i)
// is at out[o * inner + i]: exactly the column-major layout of the kept axes
// in their order, so the R result is the output vector with the kept dims
// (keepdims only changes the dim attribute). Cumulative ops use one axis:
// (outer, len, inner) with inner = the product of the axes before it.
//
// DETERMINISM. Work is split into tasks whose boundaries depend only on the
// shape: blocks of outputs, of inner positions and, when a reduction is long
// and has few outputs, blocks of the reduced range (partial results merged in
// block order). Each result element is written by one task, so results are
// bitwise identical for any thread count (parallel.h).
//
// Values are double (R's numeric; float32 tensors are stored as doubles and
// rounded by the graph runner) or int32 (R's integer and logical) for the
// plain reductions. Reductions accumulate in double.
#pragma once

#include <cstdint>
#include <vector>

#include "layout.h"

namespace mh {

// The plan of a reduction of an array of dims `dims` over the axes flagged in
// `reduced` (see the header).
struct ReducePlan {
  idx n = 0;        // elements of x
  idx inner = 1;    // leading kept run
  idx outer = 1;    // product of the other kept runs
  idx reduced = 1;  // product of the reduced runs (elements per output)
  std::vector<idx> rdim, rstride;   // reduced runs, fastest first, with x strides
  std::vector<idx> odim, ostride;   // kept runs after inner, with x strides
  std::vector<idx> dim, outstride;  // all runs in memory order; output stride (0 = reduced)
  idx outputs() const { return inner * outer; }
};

// Throws std::invalid_argument when sizes are negative or the flags do not
// match the dims.
ReducePlan make_reduce_plan(const std::vector<idx>& dims, const std::vector<int>& reduced);

// The reductions. Every one maps a group of `reduced` values to one double.
//   Sum, Prod, Max, Min        NaN propagates through Max/Min (as NumPy)
//   Any, All, CountNonzero     x != 0 (NaN counts as nonzero), result 0/1 or count
//   Mean                       Sum / reduced
//   Var, Std                   two passes: mean, then mean squared deviation
//                              (population variance, ddof = 0 as Keras)
//   LogSumExp                  m + log(sum(exp(x - m))), m the maximum (0 when
//                              not finite: all -Inf gives -Inf, +Inf gives +Inf)
//   Norm2                      sqrt(sum(x^2)), rescaled by max|x| when the plain
//                              sum overflows or underflows
//   SumAbs, MaxAbs, MinAbs     sum|x| (1-norm), max|x|, min|x|
//   NormP                      (sum|x|^p)^(1/p)
//   ArgMax, ArgMin             0-based position in the reduced order of the first
//                              extreme value (NaN counts as the extreme, as NumPy)
enum class ReduceOp : int {
  Sum = 0, Prod, Max, Min, Any, All, CountNonzero, Mean, Var, Std, LogSumExp,
  Norm2, SumAbs, MaxAbs, MinAbs, NormP, ArgMax, ArgMin, Count
};

ReduceOp reduce_op_from_code(int code);

// out (plan.outputs()) = the reduction of x. `p` is NormP's order. Groups
// with no elements give the op's identity (0, 1, -Inf, +Inf, ...; Mean and
// Var NaN, ArgMax/ArgMin 0): callers reject empty Max/Min/Arg* groups.
template <class In>
void reduce_forward(ReduceOp op, const In* x, const ReducePlan& plan, double p, double* out,
                    int threads);

// dx (plan.n) = the gradient of sum(g * reduce(x)) with respect to x, given
// the forward's output `out` (plan.outputs()) and its gradient g.
//   Sum: g; Mean: g / N; Prod: g * prod of the other elements (exact with zeros);
//   Max/Min, MaxAbs/MinAbs: g split evenly among the elements equal to the
//   output (ties share it; none when the output came from `initial`);
//   Var: g * 2 (x - mean) / N; Std: g (x - mean) / (N std), 0 where std = 0;
//   LogSumExp: g exp(x - out); Norm2: g x / out, 0 where out = 0;
//   SumAbs: g sign(x); NormP: g sign(x) |x|^(p-1) out^(1-p), 0 where x = 0;
//   CountNonzero (the 0-"norm") and the boolean/arg ops: 0.
void reduce_backward(ReduceOp op, const double* x, const ReducePlan& plan, double p,
                     const double* out, const double* g, double* dx, int threads);

// Softmax (log = false) or log-softmax (log = true) over the reduced axes of
// `plan` (every group of `reduced` values on its own):
//   m = max(x),  s = sum(exp(x - m)),  y = exp(x - m) / s  or  x - m - log(s).
// -Inf entries get probability 0; a group of only -Inf (or with +Inf or
// NaN) gives NaN, as NumPy and Keras do.
void softmax_forward(const double* x, const ReducePlan& plan, bool log, double* y, int threads);

// dx from the forward output y and its gradient g:
//   softmax:      dx = y (g - sum(g y));   log-softmax: dx = g - exp(y) sum(g).
void softmax_backward(const double* y, const double* g, const ReducePlan& plan, bool log,
                      double* dx, int threads);

// Cumulative sum (prod = false) or product along the middle axis of an
// (outer, len, inner) array (column-major: element (o, k, i) at
// (o * len + k) * inner + i). y may not alias x.
template <class In>
void cumulative_forward(const In* x, idx outer, idx len, idx inner, bool prod, double* y,
                        int threads);

// dx from x, the forward's output y and its gradient g: cumsum: the reverse
// cumulative sum of g; cumprod: dx_k = y_{k-1} S_k with S_k = g_k + x_{k+1}
// S_{k+1} (exact with zeros, no division).
void cumulative_backward(const double* x, const double* y, const double* g, idx outer, idx len,
                         idx inner, bool prod, double* dx, int threads);

}  // namespace mh
