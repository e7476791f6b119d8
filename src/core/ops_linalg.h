// Linear-algebra ops of the op_* API (op_matmul, op_einsum, op_dot,
// op_tensordot, op_dot_product_attention): forward and backward.
//
// LAYOUT. These kernels read and write the caller's arrays as they are: R
// arrays, COLUMN-MAJOR with Keras's axis order (the first axis varies
// fastest), always double. An array is described by its dims (axis 0
// fastest) and, where the kernels walk it in another order, by the STEP of
// each axis (the distance in elements between neighbours along it).
//
// CONTRACTIONS. op_matmul, op_einsum, op_dot and op_tensordot are all one
// primitive: a contraction of two operands planned on the R side
// (R/ops-linalg.R) from the operands' index labels:
//   * each operand is GATHERED (one strided pass, GatherPlan) into a stack of
//     column-major matrices, the stack index slowest:
//        A (rows, inner, batch)   from x1,   B (inner, cols, batch) from x2,
//     where rows = x1's free axes, inner = the contracted axes, cols = x2's
//     free axes, batch = the axes both operands and the output keep. Axes of
//     one operand that neither the other operand nor the output has are
//     SUMMED while gathering (they are gathered last and added up). A label
//     repeated within an operand (a diagonal) is one gathered axis whose step
//     is the sum of the repeated axes' steps.
//   * C_p = A_p B_p for every p < batch: column-major (rows, cols, batch).
//   * the output is gathered from C in the caller's axis order.
// When a gather is the identity (the operand's axes are already in stack
// order, e.g. x (B, T, K) %*% w (K, M), where R's x IS a (B*T, K) column-major
// matrix) and the compute type is double, the caller's array is used as is:
// no copy. Otherwise each gather is one pass that also converts to float for
// float32 graphs.
//
// Backward: dA = G B^T, dB = A^T G (per p), then the gathers run in reverse
// (scatter, broadcasting along the summed axes; zero-filled first when a
// diagonal leaves elements unreached).
//
// ATTENTION (dot_product_attention): query (B, T, N, H), key and value
// (B, S, K, H) as R arrays. Internally one task per (batch b, head n): the
// operands are permuted once to per-head column-major stacks
//   q (T, H, B, N), k and v (S, H, B, K), logits/probs (S, T, B, N)
// (transposed logits, so each query's softmax runs over contiguous keys),
// output (T, H, B, N) permuted back to R's (B, T, N, H). Head n uses key/value
// head n / (N / K) (grouped-query attention). bias and mask are read in place
// through steps (0 along broadcast axes).
//
// DETERMINISM. Work is split into blocks that depend only on the shapes,
// every output element is written by one task, and sums over broadcast or
// split axes run in a fixed order: results are bitwise identical for any
// thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "layout.h"

namespace mh {

// ---- strided copies and reductions ---------------------------------------

// dst[sum_k i_k dstep[k]] = D(src[sum_k i_k sstep[k]]) for every index
// (i_0, ..., i_{r-1}) < dims (axis 0 innermost). A step may be 0 in src
// (broadcast). The map from indices to dst offsets must be one-to-one.
template <class S, class D>
void strided_copy(const S* src, const std::vector<idx>& sstep, D* dst,
                  const std::vector<idx>& dstep, const std::vector<idx>& dims, int threads);

// How one operand is gathered: the gathered array has `dims` (axis 0
// fastest): first the kept axes (product `kept`), then the summed axes
// (product `summed`), and axis k is read with step steps[k] from the source
// array of `source_size` elements. The result of gather_reduce has `kept`
// elements.
struct GatherPlan {
  std::vector<idx> dims, steps;
  idx kept = 1, summed = 1, source_size = 0;

  // Whether the gathered array is the source itself (no copy needed).
  bool identity() const;
  // Whether every source element is read (false with a repeated label).
  bool covers() const { return kept * summed == source_size; }
  // Throws std::invalid_argument if the plan reads outside the source.
  void check(const char* what) const;
};

// out (kept) = the gathered array summed over its summed axes.
template <class T>
void gather_reduce(const double* src, const GatherPlan& plan, T* out, int threads);

// The adjoint: dsrc (source_size) = g (kept) scattered back, broadcast along
// the summed axes; elements no index reaches are zero.
template <class T>
void gather_reduce_backward(const T* g, const GatherPlan& plan, double* dsrc, int threads);

// ---- batched matrix products -----------------------------------------------

// C_p = op(A_p) op(B_p) for p < batch: C column-major (rows, cols) at
// c + p*rows*cols; A_p at a + p*rows*inner, stored (rows, inner) or, when ta,
// (inner, rows); B_p at b + p*inner*cols, stored (inner, cols) or, when tb,
// (cols, inner). Large products are split into row/column blocks (and, when
// the output is small, chunks of the inner dimension whose partial products
// are added in order), all chosen from the shapes alone.
template <class T>
void batched_gemm(const T* a, bool ta, const T* b, bool tb, T* c, idx rows, idx cols, idx inner,
                  idx batch, int threads);

// ---- two-operand contractions -------------------------------------------------

// See the header. out_dims/out_steps: the output's axes in the caller's
// order (axis 0 fastest) and each one's step in C (rows, cols, batch).
struct ContractionPlan {
  GatherPlan a, b;
  idx rows = 1, inner = 1, cols = 1, batch = 1;
  std::vector<idx> out_dims, out_steps;

  idx out_size() const { return rows * cols * batch; }
  bool out_identity() const;
  void check() const;
};

// out (out_size) = the contraction of x1 and x2, computed in T.
template <class T>
void contraction_forward(const double* x1, const double* x2, const ContractionPlan& plan,
                         double* out, int threads);

// grad (out_size) -> dx1, dx2 (the operands' sizes; either may be null).
template <class T>
void contraction_backward(const double* x1, const double* x2, const double* grad,
                          const ContractionPlan& plan, double* dx1, double* dx2, int threads);

// ---- dot-product attention ----------------------------------------------------

struct DpaShape {
  idx B = 0, T = 0, S = 0, N = 0, K = 0, H = 0;  // K key/value heads, N % K == 0
};

// Optional additive bias (double) and boolean mask (int32, nonzero = attend),
// each broadcast to (B, N, T, S): element (b, n, t, s) is at
// b*step[0] + n*step[1] + t*step[2] + s*step[3] (step 0 along broadcast axes).
// dims: the operand's own sizes along (B, N, T, S) (1 along broadcast axes).
struct DpaExtras {
  const double* bias = nullptr;
  idx bias_step[4] = {0, 0, 0, 0};
  idx bias_dims[4] = {1, 1, 1, 1};
  const int32_t* mask = nullptr;
  idx mask_step[4] = {0, 0, 0, 0};
  bool causal = false;  // key s attends to query t iff s <= t
  double scale = 1.0;
};

// The logit given to a masked position (Keras: -0.7 times the largest
// bfloat16-range value): a query row with every key masked gets uniform
// probabilities, as in Keras.
constexpr double kDpaMaskedLogit = -0.7 * 3.38953e38;

// out (B, T, N, H) = softmax(scale * q k^T + bias, masked) v, per head.
template <class T>
void dpa_forward(const double* q, const double* k, const double* v, const DpaShape& shape,
                 const DpaExtras& extras, double* out, int threads);

// grad (B, T, N, H) -> dq, dk, dv (the inputs' shapes) and dbias (the
// bias's own shape, bias_dims; may be null).
template <class T>
void dpa_backward(const double* q, const double* k, const double* v, const DpaShape& shape,
                  const DpaExtras& extras, const double* grad, double* dq, double* dk, double* dv,
                  double* dbias, int threads);

}  // namespace mh
