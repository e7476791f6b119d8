// Activation functions: see activations.h. Work is split into fixed blocks of
// elements (or of rows for the row-wise activations), so results do not
// depend on the thread count.
#include "activations.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "parallel.h"

namespace mh {

namespace {

constexpr idx kElementBlock = 1 << 14;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kLeakySlope = 0.2;
constexpr double kInvSqrt2 = 0.70710678118654752440084436210485;
constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;

int threads_for(idx n, int threads) { return threads_for_elements(static_cast<double>(n), threads); }

template <class T>
T sigmoid(T z) {
  if (z >= T(0)) return T(1) / (T(1) + std::exp(-z));
  const T e = std::exp(z);
  return e / (T(1) + e);
}

template <class T>
T softplus(T z) {
  return z > T(0) ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
}

// Elementwise forward value.
template <class T>
T forward_one(Activation a, T z) {
  switch (a) {
    case Activation::Linear: return z;
    case Activation::Relu: return z > T(0) ? z : T(0);
    case Activation::Gelu: return T(0.5) * z * (T(1) + std::erf(z * T(kInvSqrt2)));
    case Activation::Sigmoid: return sigmoid(z);
    case Activation::Tanh: return std::tanh(z);
    case Activation::Silu: return z * sigmoid(z);
    case Activation::Elu: return z > T(0) ? z : std::expm1(z);
    case Activation::Selu:
      return T(kSeluScale) * (z > T(0) ? z : T(kSeluAlpha) * std::expm1(z));
    case Activation::Softplus: return softplus(z);
    case Activation::Softsign: return z / (T(1) + std::abs(z));
    case Activation::Exponential: return std::exp(z);
    case Activation::Relu6: return std::min(std::max(z, T(0)), T(6));
    case Activation::LeakyRelu: return z >= T(0) ? z : T(kLeakySlope) * z;
    case Activation::HardSigmoid: return std::min(std::max(z + T(3), T(0)), T(6)) / T(6);
    case Activation::Mish: return z * std::tanh(softplus(z));
    default: throw std::logic_error("activation: not elementwise");
  }
}

// Elementwise derivative dy/dz from the saved value s (y or z, see
// activation_backward_uses_output).
template <class T>
T derivative_one(Activation a, T s) {
  switch (a) {
    case Activation::Linear: return T(1);
    case Activation::Relu: return s > T(0) ? T(1) : T(0);  // s = y
    case Activation::Gelu: {                               // s = z
      const T cdf = T(0.5) * (T(1) + std::erf(s * T(kInvSqrt2)));
      return cdf + s * T(kInvSqrt2Pi) * std::exp(T(-0.5) * s * s);
    }
    case Activation::Sigmoid: return s * (T(1) - s);       // s = y
    case Activation::Tanh: return T(1) - s * s;            // s = y
    case Activation::Silu: {                               // s = z
      const T sg = sigmoid(s);
      return sg * (T(1) + s * (T(1) - sg));
    }
    case Activation::Elu: return s > T(0) ? T(1) : s + T(1);  // s = y
    case Activation::Selu:                                   // s = y
      return s > T(0) ? T(kSeluScale) : s + T(kSeluScale * kSeluAlpha);
    case Activation::Softplus: return -std::expm1(-s);       // s = y: sigmoid(z) = 1 - exp(-y)
    case Activation::Softsign: {                             // s = y: 1/(1+|z|)^2 = (1-|y|)^2
      const T u = T(1) - std::abs(s);
      return u * u;
    }
    case Activation::Exponential: return s;                  // s = y
    case Activation::Relu6: return (s > T(0) && s < T(6)) ? T(1) : T(0);         // s = y
    case Activation::LeakyRelu: return s >= T(0) ? T(1) : T(kLeakySlope);        // s = y
    case Activation::HardSigmoid: return (s > T(0) && s < T(1)) ? T(1) / T(6) : T(0);  // s = y
    case Activation::Mish: {                                 // s = z
      const T t = std::tanh(softplus(s));
      return t + s * (T(1) - t * t) * sigmoid(s);
    }
    default: throw std::logic_error("activation: not elementwise");
  }
}

bool row_wise(Activation a) { return a == Activation::Softmax || a == Activation::LogSoftmax; }

long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

// body(i0, i1) over fixed blocks of elements [i0, i1) of [0, n).
template <class F>
void for_element_blocks(idx n, int threads, F body) {
  parallel_for(n_blocks(n, kElementBlock), threads_for(n, threads), [&](long blk) {
    const idx i0 = blk * kElementBlock;
    body(i0, std::min(n, i0 + kElementBlock));
  });
}

// body(r) for each row, over fixed blocks of whole rows.
template <class F>
void for_rows(idx rows, idx cols, int threads, F body) {
  const idx row_block = std::max<idx>(1, kElementBlock / std::max<idx>(cols, 1));
  parallel_for(n_blocks(rows, row_block), threads_for(rows * cols, threads), [&](long blk) {
    const idx r0 = blk * row_block, r1 = std::min(rows, r0 + row_block);
    for (idx r = r0; r < r1; ++r) body(r);
  });
}

}  // namespace

Activation activation_from_code(int code) {
  if (code < 0 || code >= static_cast<int>(Activation::Count)) {
    throw std::invalid_argument("unknown activation code");
  }
  return static_cast<Activation>(code);
}

bool activation_backward_uses_output(Activation a) {
  switch (a) {
    case Activation::Gelu:
    case Activation::Silu:
    case Activation::Mish:
      return false;
    default:
      return true;
  }
}

template <class T>
void activation_forward(Activation a, const T* z, idx rows, idx cols, T* y, int threads) {
  const idx n = rows * cols;
  if (a == Activation::Linear) {
    if (y != z) std::copy(z, z + n, y);
    return;
  }
  if (!row_wise(a)) {
    for_element_blocks(n, threads, [&](idx i0, idx i1) {
      for (idx i = i0; i < i1; ++i) y[i] = forward_one(a, z[i]);
    });
    return;
  }
  for_rows(rows, cols, threads, [&](idx r) {
    const T* zr = z + r * cols;
    T* yr = y + r * cols;
    T mx = zr[0];
    for (idx j = 1; j < cols; ++j) mx = std::max(mx, zr[j]);
    T sum = 0;
    if (a == Activation::Softmax) {
      for (idx j = 0; j < cols; ++j) {
        yr[j] = std::exp(zr[j] - mx);
        sum += yr[j];
      }
      const T inv = T(1) / sum;
      for (idx j = 0; j < cols; ++j) yr[j] *= inv;
    } else {
      for (idx j = 0; j < cols; ++j) sum += std::exp(zr[j] - mx);
      const T shift = mx + std::log(sum);
      for (idx j = 0; j < cols; ++j) yr[j] = zr[j] - shift;
    }
  });
}

template <class T>
void activation_backward(Activation a, const T* saved, const T* dy, idx rows, idx cols, T* dz,
                         int threads) {
  const idx n = rows * cols;
  if (a == Activation::Linear) {
    if (dz != dy) std::copy(dy, dy + n, dz);
    return;
  }
  if (!row_wise(a)) {
    for_element_blocks(n, threads, [&](idx i0, idx i1) {
      for (idx i = i0; i < i1; ++i) dz[i] = dy[i] * derivative_one(a, saved[i]);
    });
    return;
  }
  for_rows(rows, cols, threads, [&](idx r) {
    const T* yr = saved + r * cols;
    const T* gr = dy + r * cols;
    T* dr = dz + r * cols;
    if (a == Activation::Softmax) {
      // dz = y * (dy - sum(dy * y))
      T dot = 0;
      for (idx j = 0; j < cols; ++j) dot += gr[j] * yr[j];
      for (idx j = 0; j < cols; ++j) dr[j] = yr[j] * (gr[j] - dot);
    } else {
      // log_softmax: dz = dy - exp(y) * sum(dy)
      T sum = 0;
      for (idx j = 0; j < cols; ++j) sum += gr[j];
      for (idx j = 0; j < cols; ++j) dr[j] = gr[j] - std::exp(yr[j]) * sum;
    }
  });
}

#define MH_INSTANTIATE_ACTIVATIONS(T)                                                           \
  template void activation_forward<T>(Activation, const T*, idx, idx, T*, int);                 \
  template void activation_backward<T>(Activation, const T*, const T*, idx, idx, T*, int);

MH_INSTANTIATE_ACTIVATIONS(float)
MH_INSTANTIATE_ACTIVATIONS(double)

}  // namespace mh
