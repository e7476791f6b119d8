// Keras's Subtract and Multiply layers on tensors of one shape (Add is
// add.h; the R layers broadcast R arrays themselves and call these for
// float32 native tensors of equal shapes, R/layer-merge.R).
//
// Subtract: y = a - b. Its backward passes g to a and -g to b.
// Multiply: y = x_1 * x_2 * ... * x_k, multiplied in input order, each
// product rounded to T. Its backward gives input i
//   g * (x_1 * ... * x_{i-1}) * (x_k * ... * x_{i+1}),
// the two factor products accumulated in double (the suffix from the last
// input down) and the result rounded to T once.
//
// Both follow the R reference (merge_round() after each double operation)
// operation for operation: a difference is taken in double and rounded to
// T; float32 results equal the reference's bit for bit. Fixed element
// blocks, one writer per element: identical for any thread count.
#pragma once

#include <vector>

#include "layout.h"

namespace mh {

template <class T>
void subtract_forward(const T* a, const T* b, idx n, T* y, int threads);

// y = -x (the gradient of Subtract's second input).
template <class T>
void negate(const T* x, idx n, T* y, int threads);

template <class T>
void multiply_forward(const std::vector<const T*>& xs, idx n, T* y, int threads);

// dxs[i] (n each) receives input i's gradient; g is dLoss/dy.
template <class T>
void multiply_backward(const std::vector<const T*>& xs, const T* g, idx n, const std::vector<T*>& dxs,
                       int threads);

}  // namespace mh
