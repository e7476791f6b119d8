// Global average pooling over steps: see pooling.h. Parallel over sequences
// (each owns its output row), so results do not depend on the thread count.
#include "pooling.h"

#include <algorithm>
#include <vector>

#include "parallel.h"

namespace mh {

namespace {

idx count_steps(const int32_t* mask, idx b, idx steps) {
  if (!mask) return steps;
  idx c = 0;
  for (idx t = 0; t < steps; ++t) c += mask[b * steps + t] != 0;
  return c;
}

}  // namespace

template <class T>
void average_steps_forward(const T* x, idx B, idx steps, idx C, const int32_t* mask, T* y,
                           int threads) {
  const int used = threads_for_elements(static_cast<double>(B * steps * C), threads);
  parallel_for(static_cast<long>(B), used, [&](long b) {
    std::vector<double> acc(static_cast<size_t>(C), 0.0);
    const idx count = count_steps(mask, b, steps);
    for (idx t = 0; t < steps; ++t) {
      if (mask && mask[b * steps + t] == 0) continue;
      const T* xr = x + (b * steps + t) * C;
      for (idx c = 0; c < C; ++c) acc[c] += xr[c];
    }
    T* yr = y + b * C;
    for (idx c = 0; c < C; ++c) {
      yr[c] = count > 0 ? static_cast<T>(acc[c] / static_cast<double>(count)) : T(0);
    }
  });
}

template <class T>
void average_steps_backward(const T* dy, idx B, idx steps, idx C, const int32_t* mask, T* dx,
                            int threads) {
  const int used = threads_for_elements(static_cast<double>(B * steps * C), threads);
  parallel_for(static_cast<long>(B), used, [&](long b) {
    const idx count = count_steps(mask, b, steps);
    const T* gr = dy + b * C;
    for (idx t = 0; t < steps; ++t) {
      T* dr = dx + (b * steps + t) * C;
      if (count == 0 || (mask && mask[b * steps + t] == 0)) {
        std::fill(dr, dr + C, T(0));
        continue;
      }
      const T inv = static_cast<T>(1.0 / static_cast<double>(count));
      for (idx c = 0; c < C; ++c) dr[c] = gr[c] * inv;
    }
  });
}

#define MH_INSTANTIATE_POOLING(T)                                                              \
  template void average_steps_forward<T>(const T*, idx, idx, idx, const int32_t*, T*, int);    \
  template void average_steps_backward<T>(const T*, idx, idx, idx, const int32_t*, T*, int);

MH_INSTANTIATE_POOLING(float)
MH_INSTANTIATE_POOLING(double)

}  // namespace mh
