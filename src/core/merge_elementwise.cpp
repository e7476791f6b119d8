// Subtract and Multiply: see merge_elementwise.h.
//
// No contraction into fused multiply-adds: every product must be rounded as
// the R reference rounds it (the pragma comes before every include, as in
// optimizer_update.cpp).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "merge_elementwise.h"

#include <algorithm>
#include <stdexcept>

#include "parallel.h"

namespace mh {

namespace {

constexpr idx kBlock = 1 << 14;

// body(i0, i1) over fixed blocks of [0, n); one thread below 2^15 elements.
template <class F>
void over_blocks(idx n, int threads, F body) {
  const int used = n < (idx(1) << 15) ? 1 : threads;
  parallel_for(static_cast<long>((n + kBlock - 1) / kBlock), used, [&](long blk) {
    const idx i0 = blk * kBlock;
    body(i0, std::min(n, i0 + kBlock));
  });
}

}  // namespace

template <class T>
void subtract_forward(const T* a, const T* b, idx n, T* y, int threads) {
  over_blocks(n, threads, [&](idx i0, idx i1) {
    for (idx i = i0; i < i1; ++i) y[i] = static_cast<T>(static_cast<double>(a[i]) - static_cast<double>(b[i]));
  });
}

template <class T>
void negate(const T* x, idx n, T* y, int threads) {
  over_blocks(n, threads, [&](idx i0, idx i1) {
    for (idx i = i0; i < i1; ++i) y[i] = -x[i];
  });
}

template <class T>
void multiply_forward(const std::vector<const T*>& xs, idx n, T* y, int threads) {
  if (xs.empty()) throw std::invalid_argument("multiply: no inputs");
  over_blocks(n, threads, [&](idx i0, idx i1) {
    std::copy(xs[0] + i0, xs[0] + i1, y + i0);
    for (size_t k = 1; k < xs.size(); ++k) {
      const T* xk = xs[k];
      for (idx i = i0; i < i1; ++i) {
        y[i] = static_cast<T>(static_cast<double>(y[i]) * static_cast<double>(xk[i]));
      }
    }
  });
}

template <class T>
void multiply_backward(const std::vector<const T*>& xs, const T* g, idx n, const std::vector<T*>& dxs,
                       int threads) {
  const size_t k = xs.size();
  if (k == 0 || dxs.size() != k) throw std::invalid_argument("multiply_backward: one gradient per input");
  over_blocks(n, threads, [&](idx i0, idx i1) {
    for (idx i = i0; i < i1; ++i) {
      for (size_t j = 0; j < k; ++j) {
        double prefix = 1, suffix = 1;
        for (size_t m = 0; m < j; ++m) prefix = prefix * static_cast<double>(xs[m][i]);
        for (size_t m = k; m-- > j + 1;) suffix = suffix * static_cast<double>(xs[m][i]);
        dxs[j][i] = static_cast<T>(static_cast<double>(g[i]) * prefix * suffix);
      }
    }
  });
}

template void subtract_forward<float>(const float*, const float*, idx, float*, int);
template void subtract_forward<double>(const double*, const double*, idx, double*, int);
template void negate<float>(const float*, idx, float*, int);
template void negate<double>(const double*, idx, double*, int);
template void multiply_forward<float>(const std::vector<const float*>&, idx, float*, int);
template void multiply_forward<double>(const std::vector<const double*>&, idx, double*, int);
template void multiply_backward<float>(const std::vector<const float*>&, const float*, idx,
                                       const std::vector<float*>&, int);
template void multiply_backward<double>(const std::vector<const double*>&, const double*, idx,
                                        const std::vector<double*>&, int);

}  // namespace mh
