// Elementwise sum: see add.h. Fixed element blocks, one writer per element.
#include "add.h"

#include <algorithm>
#include <stdexcept>

#include "parallel.h"

namespace mh {

template <class T>
void add_forward(const std::vector<const T*>& xs, idx n, T* y, int threads) {
  if (xs.empty()) throw std::invalid_argument("add: no inputs");
  constexpr idx kBlock = 1 << 14;
  const int used = n < (idx)1 << 15 ? 1 : threads;
  parallel_for(static_cast<long>((n + kBlock - 1) / kBlock), used, [&](long blk) {
    const idx i0 = blk * kBlock, i1 = std::min(n, i0 + kBlock);
    std::copy(xs[0] + i0, xs[0] + i1, y + i0);
    for (size_t k = 1; k < xs.size(); ++k) {
      const T* xk = xs[k];
      for (idx i = i0; i < i1; ++i) y[i] += xk[i];
    }
  });
}

template void add_forward<float>(const std::vector<const float*>&, idx, float*, int);
template void add_forward<double>(const std::vector<const double*>&, idx, double*, int);

}  // namespace mh
