// Dense products whose input, output or gradient is one of R's column-major
// double arrays (seen as a matrix, element (r, f) at x[r + f * ld]), read or
// written block by block with no converted copy of the whole array: the
// attention layer's projections on its in-place path. Row-major operands are
// in the core's layout (layout.h); row maps give the core row of each R row.
// Float products use the packed GEMM (packed_gemm.h) with AVX2 + FMA,
// Eigen's otherwise. Row blocks are fixed by the shapes, so results are
// bitwise the same for any thread count.
#pragma once

#include <functional>
#include <vector>

#include "layout.h"

namespace mh {

// The same blocked product reading x from a column-major array of doubles
// (an R matrix): x(r, f) = x[r + f * ldx], ldx >= rows. Each block of rows is
// converted to T right before its product (no converted copy of x is made);
// store(r0, nr, block) as in dense_forward_blocks, r0 counting rows of x.
template <class T>
void dense_forward_blocks_colmajor(const double* x, idx ldx, idx rows, idx in, const T* w,
                                   const T* b, idx out, int threads,
                                   const std::function<void(idx, idx, const T*)>& store);

// One product of the above.
template <class T>
struct ColMajorProduct {
  const double* x;
  idx ldx, rows, in;
  const T* w;
  const T* b;
  idx out;
  std::function<void(idx, idx, const T*)> store;
  // If set, *finite tells afterwards whether every value of x was finite (the
  // check rides on the conversion: no second pass over x).
  bool* finite = nullptr;
  // Optional: where the packed float kernel (AVX2 builds) writes y itself,
  // instead of handing its blocks to `store` (other kernels still call
  // `store`, which must be set). direct_rows(r0, nr, rows) sets rows[i] to
  // the place of row r0 + i of y; y(r, j) then goes to
  // rows[r - r0][direct_strip[j / 16] + j % 16], so each run of 16 columns
  // starting at a multiple of 16 must be contiguous there. direct_strip
  // holds ceil(out / 16) offsets. Rows of different blocks may be written
  // concurrently.
  std::function<void(idx, idx, T**)> direct_rows = nullptr;
  const idx* direct_strip = nullptr;
};

// Several such products (e.g. the query, key and value projections) in one
// parallel loop over all their row blocks: one synchronisation instead of
// one per product, and better balance. Same blocks and bits as one by one.
template <class T>
void dense_forward_blocks_colmajor(const std::vector<ColMajorProduct<T>>& products, int threads);

// y = x' w (+ b) written as column-major doubles (an R matrix): row r of x'
// is row x_row[r] of the row-major x (any number of rows, `in` columns), and
// y(r, j) goes to y[r + col * ldy] with col = y_col[j] (y_col may be null:
// col = j). rows = number of rows of y.
template <class T>
void dense_forward_gather_colmajor(const T* x, const idx* x_row, idx rows, idx in, const T* w,
                                   const T* b, idx out, double* y, idx ldy, const idx* y_col,
                                   int threads);

// Backward of a product whose input x is row-major in the core's row order
// and whose output gradient dy comes as column-major doubles (an R array):
// row r of dy (dy(r, j) at dy[r + col * ldy], col = y_col[j], y_col may be
// null) belongs to row x_row[r] of x (rows x in). Writes dx = dy w^T in x's
// layout (rows x in, row x_row[r]), dw = x^T dy (in, out) and db = column
// sums of dy (skipped if null). dy is converted to T block by block (no
// converted copy of it); dw and db are summed per fixed group of row blocks,
// then over the groups in order (so not bitwise dense_backward_weights).
// If dy_finite is set, *dy_finite tells afterwards whether every value of dy
// was finite (checked while converting it).
template <class T>
void dense_backward_colmajor_dy(const double* dy, idx ldy, const idx* y_col, const idx* x_row,
                                idx rows, const T* x, idx in, const T* w, idx out, T* dx, T* dw,
                                T* db, int threads, bool* dy_finite = nullptr);

// dw = x^T dy (in, out), db = column sums of dy (skipped if null), where x is
// column-major doubles (an R matrix, x(r, f) at x[r + f * ldx]) whose row r
// is row x_row[r] of dy (row-major, rows x out). Each band of kernel rows
// converts its columns of x on the fly (no converted copy of x exists).
template <class T>
void dense_backward_weights_colmajor(const double* x, idx ldx, const idx* x_row, idx rows,
                                     idx in, const T* dy, idx out, T* dw, T* db, int threads);

// One term dy w^T of an input gradient: dy row-major (any rows, out), w the
// forward kernel (in, out) row-major.
template <class T>
struct BackwardInputTerm {
  const T* dy;
  idx out;
  const T* w;
};

// dx = sum of the terms' dy w^T (in order), written as column-major doubles
// (an R matrix): dx(r, f) at dx[r + f * ldx], from row dy_row[r] of each dy.
// Nothing is done for a null dx.
template <class T>
void dense_backward_input_colmajor(const std::vector<BackwardInputTerm<T>>& terms,
                                   const idx* dy_row, idx rows, idx in, double* dx, idx ldx,
                                   int threads);

// One term of a projection's backward: its output gradient dy (row-major,
// rows in the core's order, `out` columns), its kernel w (in, out) and where
// its kernel and bias gradients go (db may be null).
template <class T>
struct BackwardTerm {
  const T* dy;
  idx out;
  const T* w;
  T* dw;
  T* db;
};

// The backward of a projection whose input x is column-major doubles (an R
// matrix, x(r, f) at x[r + f * ldx]) and whose output gradients are in the
// core's row order (row r of x is row x_row[r] of every dy):
//   dw_t = x^T dy_t, db_t = column sums of dy_t for every term t, and
//   dx = sum over the terms of dy_t w_t^T, written as column-major doubles
//   (dx(r, f) at dx[r + f * lddx]); a null dx: the input gradient is not
//   computed.
template <class T>
struct ColMajorBackward {
  const double* x;
  idx ldx;
  const idx* x_row;
  idx rows, in;
  std::vector<BackwardTerm<T>> terms;
  double* dx;
  idx lddx;
};

// Several such backward passes (e.g. the query, key and value projections)
// in one parallel loop over fixed groups of row blocks: each block of x is
// converted once and used for both the weight gradients (summed per group,
// then over the groups in order) and the input gradient. Bitwise the same
// for any thread count. When the per-group partial sums would need too much
// memory (very wide kernels), a problem falls back to
// dense_backward_weights_colmajor + dense_backward_input_colmajor.
// `alongside`, if set, runs once on one thread while the others start on the
// blocks (with the fallback, before them).
template <class T>
void dense_backward_colmajor_x(const std::vector<ColMajorBackward<T>>& problems, int threads,
                               const std::function<void()>& alongside = nullptr);

}  // namespace mh
