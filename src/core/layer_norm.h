// Layer normalization (Keras LayerNormalization), forward and backward.
// The normalized axes are the last ones of a row-major (rows, n) tensor (the
// glue moves them there): each row is normalized on its own,
//   mean = sum(x) / n,  var = sum((x - mean)^2) / n,
//   rstd = 1 / sqrt(var + epsilon),  xhat = (x - mean) * rstd,
//   y = xhat * gamma + beta
// with gamma, beta of n values (either may be null: no scale / no center).
// Row statistics are accumulated in double.
#pragma once

#include "layout.h"

namespace mh {

template <class T>
void layer_norm_forward(const T* x, idx rows, idx n, const T* gamma, const T* beta,
                        double epsilon, T* y, int threads);

// dy (rows, n) -> dx (rows, n); dgamma, dbeta (n), each skipped when null.
//   g = dy * gamma,  dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dgamma = sum over rows of dy * xhat,  dbeta = sum over rows of dy
template <class T>
void layer_norm_backward(const T* x, idx rows, idx n, const T* gamma, double epsilon,
                         const T* dy, T* dx, T* dgamma, T* dbeta, int threads);

}  // namespace mh
