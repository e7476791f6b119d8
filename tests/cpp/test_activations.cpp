// Activations (activations.h): forward against the formulas of the header,
// backward against finite differences (double).
#include <cmath>

#include "activations.h"
#include "test_util.h"

namespace {

using mh::Activation;
using mh::idx;

// The header's definitions, elementwise, written out independently.
double reference(Activation a, double z) {
  const double sig = 1 / (1 + std::exp(-z)), sp = std::log(1 + std::exp(z));
  switch (a) {
    case Activation::Linear: return z;
    case Activation::Relu: return std::max(z, 0.0);
    case Activation::Gelu: return 0.5 * z * (1 + std::erf(z / std::sqrt(2.0)));
    case Activation::Sigmoid: return sig;
    case Activation::Tanh: return std::tanh(z);
    case Activation::Silu: return z * sig;
    case Activation::Elu: return z > 0 ? z : std::exp(z) - 1;
    case Activation::Selu:
      return 1.0507009873554805 * (z > 0 ? z : 1.6732632423543772 * (std::exp(z) - 1));
    case Activation::Softplus: return sp;
    case Activation::Softsign: return z / (1 + std::fabs(z));
    case Activation::Exponential: return std::exp(z);
    case Activation::Relu6: return std::min(std::max(z, 0.0), 6.0);
    case Activation::LeakyRelu: return z >= 0 ? z : 0.2 * z;
    case Activation::HardSigmoid: return std::min(std::max(z + 3, 0.0), 6.0) / 6;
    case Activation::Mish: return z * std::tanh(sp);
    default: return NAN;
  }
}

const idx kRows = 3, kCols = 7;

// Values away from every kink (0, +-3, 6), spread over [-7, 8].
std::vector<double> inputs() {
  std::vector<double> z = mhtest::random_values<double>(kRows * kCols, 5, -7, 8);
  for (double& v : z)
    for (double kink : {0.0, -3.0, 3.0, 6.0})
      if (std::fabs(v - kink) < 0.05) v += 0.1;
  return z;
}

std::vector<double> reference_rows(Activation a, const std::vector<double>& z) {
  std::vector<double> y(z.size());
  for (idx r = 0; r < kRows; ++r) {
    const double* zr = z.data() + r * kCols;
    double mx = zr[0], sum = 0;
    for (idx j = 0; j < kCols; ++j) mx = std::max(mx, zr[j]);
    for (idx j = 0; j < kCols; ++j) sum += std::exp(zr[j] - mx);
    for (idx j = 0; j < kCols; ++j) {
      y[r * kCols + j] = a == Activation::Softmax ? std::exp(zr[j] - mx) / sum
                         : a == Activation::LogSoftmax ? zr[j] - mx - std::log(sum)
                                                       : reference(a, zr[j]);
    }
  }
  return y;
}

TEST(Activations, ForwardMatchesDefinitions) {
  const auto z = inputs();
  for (int code = 0; code < static_cast<int>(Activation::Count); ++code) {
    const Activation a = mh::activation_from_code(code);
    std::vector<double> y(z.size());
    mh::activation_forward(a, z.data(), kRows, kCols, y.data(), 1);
    mhtest::expect_close(y, reference_rows(a, z), 1e-12, "activation " + std::to_string(code));
    std::vector<float> yf(z.size());
    const auto zf = mhtest::cast_values<float>(z);
    mh::activation_forward(a, zf.data(), kRows, kCols, yf.data(), 1);
    mhtest::expect_close(yf, reference_rows(a, std::vector<double>(zf.begin(), zf.end())), 1e-5,
                         "float activation " + std::to_string(code));
  }
}

TEST(Activations, BackwardMatchesFiniteDifferences) {
  auto z = inputs();
  const auto g = mhtest::random_values<double>(z.size(), 6);
  for (int code = 0; code < static_cast<int>(Activation::Count); ++code) {
    const Activation a = mh::activation_from_code(code);
    std::vector<double> y(z.size()), dz(z.size());
    mh::activation_forward(a, z.data(), kRows, kCols, y.data(), 1);
    const std::vector<double>& saved = mh::activation_backward_uses_output(a) ? y : z;
    mh::activation_backward(a, saved.data(), g.data(), kRows, kCols, dz.data(), 1);
    auto loss = [&] {
      std::vector<double> out(z.size());
      mh::activation_forward(a, z.data(), kRows, kCols, out.data(), 1);
      return mhtest::weighted_sum(out.data(), g);
    };
    mhtest::expect_close(dz, mhtest::numeric_gradient(z, loss), 1e-6,
                         "activation " + std::to_string(code));
    // In place (dz aliasing dy) gives the same.
    std::vector<double> inplace = g;
    mh::activation_backward(a, saved.data(), inplace.data(), kRows, kCols, inplace.data(), 1);
    EXPECT_TRUE(mhtest::bitwise_equal(inplace, dz)) << code;
  }
}

}  // namespace
