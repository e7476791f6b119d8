// Global average pooling over the steps of a sequence (Keras
// GlobalAveragePooling1D), forward and backward.
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

}  // namespace mh
