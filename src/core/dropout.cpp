// Dropout layer: see dropout.h. The mask is generated once per call (parallel
// over fixed blocks of mask elements, each a pure function of its index),
// then broadcast over the input.
#include "dropout.h"

#include <algorithm>
#include <stdexcept>

#include "dropout_rng.h"
#include "parallel.h"

namespace mh {

namespace {

constexpr idx kBlock = 1 << 14;

long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

}  // namespace

template <class T>
void dropout_apply(const T* x, const std::vector<idx>& dims, const std::vector<idx>& noise,
                   double rate, uint64_t key, T* y, int threads) {
  const int rank = static_cast<int>(dims.size());
  if (static_cast<int>(noise.size()) != rank) throw std::invalid_argument("dropout: noise rank");
  idx n = 1, m = 1;
  for (int k = 0; k < rank; ++k) {
    if (noise[k] != dims[k] && noise[k] != 1) throw std::invalid_argument("dropout: noise shape");
    n *= dims[k];
    m *= noise[k];
  }
  if (n == 0) return;
  if (rate >= 1.0) {
    std::fill(y, y + n, T(0));
    return;
  }
  const T scale = static_cast<T>(1.0 / (1.0 - rate));
  const int used = threads_for_elements(static_cast<double>(n), threads);
  Buffer<T> factor(static_cast<size_t>(m));
  parallel_for(n_blocks(m, kBlock), used, [&](long blk) {
    const idx j0 = blk * kBlock, j1 = std::min(m, j0 + kBlock);
    for (idx j = j0; j < j1; ++j) {
      factor[j] = dropout_keep(key, static_cast<uint64_t>(j), rate) ? scale : T(0);
    }
  });
  if (m == n) {
    parallel_for(n_blocks(n, kBlock), used, [&](long blk) {
      const idx i0 = blk * kBlock, i1 = std::min(n, i0 + kBlock);
      for (idx i = i0; i < i1; ++i) y[i] = x[i] * factor[i];
    });
    return;
  }
  // Broadcast: walk the elements in row-major order with an odometer that
  // tracks the matching mask index.
  std::vector<idx> mstride(rank), counter(rank, 0);
  idx s = 1;
  for (int k = rank - 1; k >= 0; --k) {
    mstride[k] = noise[k] > 1 ? s : 0;
    s *= noise[k];
  }
  idx j = 0;
  for (idx i = 0; i < n; ++i) {
    y[i] = x[i] * factor[j];
    for (int k = rank - 1; k >= 0; --k) {
      j += mstride[k];
      if (++counter[k] < dims[k]) break;
      j -= mstride[k] * dims[k];
      counter[k] = 0;
    }
  }
}

template void dropout_apply<float>(const float*, const std::vector<idx>&, const std::vector<idx>&,
                                   double, uint64_t, float*, int);
template void dropout_apply<double>(const double*, const std::vector<idx>&,
                                    const std::vector<idx>&, double, uint64_t, double*, int);

}  // namespace mh
