// Activation functions, forward and backward, on a row-major (rows, cols)
// tensor. Every activation is elementwise except softmax and log_softmax,
// which act along the last axis (each row of `cols` values).
//
// Definitions follow Keras 3 (keras.activations):
//   linear       y = z
//   relu         y = max(z, 0)
//   gelu         y = z * Phi(z) = 0.5 z (1 + erf(z / sqrt(2)))   (exact form,
//                Keras's default approximate = False)
//   sigmoid      y = 1 / (1 + exp(-z))
//   tanh         y = tanh(z)
//   softmax      y = exp(z - max) / sum(exp(z - max))  along each row
//   silu         y = z * sigmoid(z)                     ("swish")
//   elu          y = z if z > 0 else exp(z) - 1         (alpha = 1)
//   selu         y = scale * (z if z > 0 else alpha (exp(z) - 1))
//   softplus     y = log(1 + exp(z))
//   softsign     y = z / (1 + |z|)
//   exponential  y = exp(z)
//   relu6        y = min(max(z, 0), 6)
//   leaky_relu   y = z if z >= 0 else 0.2 z               (negative_slope 0.2)
//   hard_sigmoid y = relu6(z + 3) / 6
//   mish         y = z * tanh(softplus(z))
//   log_softmax  y = z - max - log(sum(exp(z - max)))     along each row
#pragma once

#include "layout.h"

namespace mh {

// The codes are part of the R <-> C++ interface (R/activations.R lists them
// in this order).
enum class Activation : int {
  Linear = 0,
  Relu,
  Gelu,
  Sigmoid,
  Tanh,
  Softmax,
  Silu,
  Elu,
  Selu,
  Softplus,
  Softsign,
  Exponential,
  Relu6,
  LeakyRelu,
  HardSigmoid,
  Mish,
  LogSoftmax,
  Count
};

// Throws std::invalid_argument for a code outside the enum.
Activation activation_from_code(int code);

// What backward needs saved from the forward pass: the output y (true) or the
// pre-activation z (false). Linear needs nothing (either works).
bool activation_backward_uses_output(Activation a);

// y (rows, cols) = f(z). y may alias z.
template <class T>
void activation_forward(Activation a, const T* z, idx rows, idx cols, T* y, int threads);

// dz (rows, cols) = dL/dz given dy = dL/dy and `saved` (y or z, as
// activation_backward_uses_output says). dz may alias dy.
template <class T>
void activation_backward(Activation a, const T* saved, const T* dy, idx rows, idx cols, T* dz,
                         int threads);

}  // namespace mh
