// The reference dense product along the last axis, forward and backward, on
// row-major matrices in the core's layout (Eigen's GEMM over fixed row
// blocks):
//   y (rows, out) = x (rows, in) . w (in, out) + b (out)
// The kernels that read or write R's column-major arrays directly are in
// dense_colmajor.h (and the packed float GEMM they use in packed_gemm.h).
#pragma once

#include <functional>

#include "layout.h"

namespace mh {

// y = x w (+ b). `b` may be null.
template <class T>
void dense_forward(const T* x, idx rows, idx in, const T* w, const T* b, idx out, T* y,
                   int threads);

// The same product, block by block: each finished block of `nr` rows
// (r0 .. r0 + nr - 1) of y, row-major (nr, out), is handed to
// store(r0, nr, block) (called from worker threads, for disjoint rows), so
// the caller can write y in another layout without a second pass.
template <class T>
void dense_forward_blocks(const T* x, idx rows, idx in, const T* w, const T* b, idx out,
                          int threads, const std::function<void(idx, idx, const T*)>& store);

// dx = dy w^T, or dx += dy w^T when `accumulate`; nothing for a null dx.
template <class T>
void dense_backward_input(const T* dy, idx rows, idx out, const T* w, idx in, T* dx,
                          bool accumulate, int threads);

// dw = x^T dy (in, out); db = column sums of dy (out), skipped if db is null.
template <class T>
void dense_backward_weights(const T* x, const T* dy, idx rows, idx in, idx out, T* dw, T* db,
                            int threads);

}  // namespace mh
