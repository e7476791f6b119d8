// Projection layers (Dense, EinsumDense) forward and backward: one GEMM, a
// bias and an activation.
//   z (rows, out) = x (rows, in) . w (in, out) + bias
//   y (rows, out) = act(z)
// All row-major. The bias is added periodically over the flat output:
//   z[i] += bias[i mod period]
// so period = out is an ordinary per-column bias, and a bias that also spans
// some of the output's leading (row) axes is expanded by the caller over
// the smallest trailing block of axes that holds it (period = that block's
// size; period must divide rows * out).
#pragma once

#include "activations.h"
#include "layout.h"

namespace mh {

// `saved` (rows, out) receives what activation_backward needs (y or z, see
// activation_backward_uses_output); it may be null for Linear.
template <class T>
void projection_forward(const T* x, idx rows, idx in, const T* w, idx out, const T* bias,
                        idx period, Activation act, T* y, T* saved, int threads);

// dy (rows, out) -> dx (rows, in), dw (in, out), dbias (period; skipped when
// null). `saved` as from projection_forward. `dy` is left unchanged.
template <class T>
void projection_backward(const T* x, idx rows, idx in, const T* w, idx out, idx period,
                         Activation act, const T* saved, const T* dy, T* dx, T* dw, T* dbias,
                         int threads);

// y[i] += bias[i mod period] for i in [0, n).
template <class T>
void add_periodic(T* y, idx n, const T* bias, idx period, int threads);

// out[j] = sum over i = j (mod period) of dy[i], summed in increasing i.
template <class T>
void sum_periodic(const T* dy, idx n, idx period, T* out, int threads);

}  // namespace mh
