// Pooling over the steps of a sequence, forward and backward: global
// average pooling (Keras GlobalAveragePooling1D) and windowed average / max
// pooling (Keras AveragePooling1D / MaxPooling1D).
//
// Global average pooling:
//   x     (B, steps, C) row-major
//   mask  (B, steps) int32 (nonzero = the step counts) or null (all count)
//   y     (B, C): y[b, c] = sum_t mask[b, t] x[b, t, c] / sum_t mask[b, t],
//         0 when no step of sequence b counts (never NaN).
// Sums are accumulated in double.
#pragma once

#include <cstdint>

#include "layout.h"

namespace mh {

template <class T>
void average_steps_forward(const T* x, idx B, idx steps, idx C, const int32_t* mask, T* y,
                           int threads);

// dx[b, t, c] = dy[b, c] * mask[b, t] / count[b]   (0 when count[b] == 0)
template <class T>
void average_steps_backward(const T* dy, idx B, idx steps, idx C, const int32_t* mask, T* dx,
                            int threads);

// Windowed pooling (Keras AveragePooling1D / MaxPooling1D):
//   x  (B, L, C) row-major, y (B, Lout, C)
//   window t covers steps t * stride - pad_left + [0, pool), clipped to
//   0 .. L - 1 (padding is never averaged and never the maximum).
//   valid  no padding, Lout = floor((L - pool) / stride) + 1 (the caller
//          refuses L < pool)
//   same   Lout = ceil(L / stride), total padding
//          max((Lout - 1) * stride + pool - L, 0), the left side getting the
//          smaller half (as TensorFlow / XLA "SAME"); every window then
//          holds at least one step.
// Average: the mean of the window's steps (sum in double). Max: the largest;
// its gradient goes to the window's FIRST largest step (as TensorFlow and
// XLA's select-and-scatter); overlapping windows add up.
struct Pool1dShape {
  idx batch = 0, steps = 0, channels = 0, pool = 1, stride = 1, pad_left = 0, out_steps = 0;
};

// Throws std::invalid_argument for pool or stride < 1, or a "valid" window
// longer than the input.
Pool1dShape pool1d_shape(idx batch, idx steps, idx channels, idx pool, idx stride, bool same);

template <class T>
void average_pool1d_forward(const T* x, const Pool1dShape& s, T* y, int threads);

// dx (B, L, C) from dy (B, Lout, C).
template <class T>
void average_pool1d_backward(const T* dy, const Pool1dShape& s, T* dx, int threads);

template <class T>
void max_pool1d_forward(const T* x, const Pool1dShape& s, T* y, int threads);

// dx (B, L, C) from x and dy (B, Lout, C) (the maxima are found again).
template <class T>
void max_pool1d_backward(const T* x, const T* dy, const Pool1dShape& s, T* dx, int threads);

}  // namespace mh
