// RMS normalization (Keras RMSNormalization) and unit (L2) normalization
// (Keras UnitNormalization), forward and backward. As in layer_norm.h, the
// normalized axes are the last ones of a row-major (rows, n) tensor (the
// glue moves them there) and each row is normalized on its own; row sums are
// accumulated in double.
//
// RMS:   r = 1 / sqrt(sum_j x_j^2 / n + epsilon),  y_j = x_j * r * scale_j
//        (scale: n values, or null for none)
// Unit:  r = min(1 / sqrt(sum_j x_j^2), 1 / epsilon),  y_j = x_j * r
//        (Keras's ops.normalize(order = 2) with epsilon 1e-12: the cap keeps an
//        all-zero row at zero)
#pragma once

#include "layout.h"

namespace mh {

template <class T>
void rms_norm_forward(const T* x, idx rows, idx n, const T* scale, double epsilon, T* y,
                      int threads);

// dy (rows, n) -> dx (rows, n) and dscale (n; skipped when null):
//   g = dy * scale,  dx_j = r g_j - r^3 x_j sum_i(g_i x_i) / n
//   dscale_j = sum over rows of dy_j x_j r
template <class T>
void rms_norm_backward(const T* x, idx rows, idx n, const T* scale, double epsilon, const T* dy,
                       T* dx, T* dscale, int threads);

template <class T>
void unit_norm_forward(const T* x, idx rows, idx n, double epsilon, T* y, int threads);

// dx_j = r dy_j - r^3 x_j sum_i(dy_i x_i) where the cap does not bind;
// dx_j = dy_j / epsilon where it does (r is then a constant).
template <class T>
void unit_norm_backward(const T* x, idx rows, idx n, double epsilon, const T* dy, T* dx,
                        int threads);

}  // namespace mh
