// 1D convolution (Keras Conv1D), forward and backward, as GEMMs over im2col
// windows.
//   x     (B, L, C) row-major: batch, steps, input channels (the glue moves
//         a channels_first input's axes here)
//   w     (K, C / groups, F) row-major: Keras's kernel shape
//   bias  (F) or null
//   y     (B, Lout, F)
// With Cg = C / groups and Fg = F / groups, output channel o = g * Fg + f of
// group g reads only input channels g * Cg .. g * Cg + Cg - 1:
//   y[b, t, o] = bias[o] + sum_{k < K, c < Cg}
//                x[b, t * stride + k * dilation - pad_left, g * Cg + c] * w[k, c, o]
// where x is zero outside 0 <= step < L (zero padding).
//
// Padding (Conv1dPadding), as Keras / TensorFlow / XLA define it, with the
// dilated window span D = (K - 1) * dilation + 1:
//   valid   no padding; Lout = floor((L - D) / stride) + 1 (the caller
//           refuses Lout < 1)
//   same    Lout = ceil(L / stride); total padding
//           max((Lout - 1) * stride + D - L, 0), the left side getting the
//           smaller half
//   causal  left padding D - 1, Lout = ceil(L / stride) (Keras pads the
//           input on the left, then convolves with "valid")
#pragma once

#include "layout.h"

namespace mh {

enum class Conv1dPadding : int { Valid = 0, Same = 1, Causal = 2 };

struct Conv1dShape {
  idx batch = 0, steps = 0, channels = 0, filters = 0, kernel = 0;
  idx stride = 1, dilation = 1, groups = 1;
  idx pad_left = 0, out_steps = 0;
};

// The shape of a convolution; pad_left and out_steps from the padding rule.
// Throws std::invalid_argument when a size is not positive (steps and batch
// may be 0), groups does not divide channels and filters, or a "valid"
// convolution's window is longer than the padded input.
Conv1dShape conv1d_shape(idx batch, idx steps, idx channels, idx filters, idx kernel, idx stride,
                         idx dilation, idx groups, Conv1dPadding padding);

// y (B, Lout, F) from x, w, bias (null: none).
template <class T>
void conv1d_forward(const T* x, const T* w, const T* bias, const Conv1dShape& s, T* y,
                    int threads);

// From dy (B, Lout, F): dx (B, L, C), dw (K, C / groups, F) and db (F; skipped
// when null). Overwrites (never accumulates into) the outputs.
template <class T>
void conv1d_backward(const T* x, const T* w, const T* dy, const Conv1dShape& s, T* dx, T* dw,
                     T* db, int threads);

}  // namespace mh
