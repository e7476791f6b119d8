// Embedding lookup: see embedding.h. The forward pass is parallel over fixed
// blocks of ids; the scatter-add is parallel over fixed bands of embedding
// columns, each visiting the ids in order, so the sums never depend on the
// thread count.
#include "embedding.h"

#include <algorithm>
#include <stdexcept>

#include "parallel.h"

namespace mh {

namespace {

constexpr idx kIdBlock = 1024;
constexpr idx kBand = 64;

long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

void check_ids(const int32_t* ids, idx n, idx V) {
  for (idx i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= V) throw std::out_of_range("embedding: id out of range");
  }
}

}  // namespace

template <class T>
void embedding_forward(const int32_t* ids, idx n, const T* table, idx V, idx D, T* out,
                       int threads) {
  check_ids(ids, n, V);
  const int used = threads_for_elements(static_cast<double>(n * D), threads);
  parallel_for(n_blocks(n, kIdBlock), used, [&](long blk) {
    const idx i0 = blk * kIdBlock, i1 = std::min(n, i0 + kIdBlock);
    for (idx i = i0; i < i1; ++i) {
      const T* row = table + static_cast<idx>(ids[i]) * D;
      std::copy(row, row + D, out + i * D);
    }
  });
}

template <class T>
void embedding_backward(const int32_t* ids, idx n, const T* dout, idx V, idx D, T* dtable,
                        int threads) {
  check_ids(ids, n, V);
  std::fill(dtable, dtable + V * D, T(0));
  const int used = threads_for_elements(static_cast<double>(n * D), threads);
  parallel_for(n_blocks(D, kBand), used, [&](long blk) {
    const idx j0 = blk * kBand, j1 = std::min(D, j0 + kBand);
    for (idx i = 0; i < n; ++i) {
      T* dst = dtable + static_cast<idx>(ids[i]) * D;
      const T* src = dout + i * D;
      for (idx j = j0; j < j1; ++j) dst[j] += src[j];
    }
  });
}

#define MH_INSTANTIATE_EMBEDDING(T)                                                         \
  template void embedding_forward<T>(const int32_t*, idx, const T*, idx, idx, T*, int);     \
  template void embedding_backward<T>(const int32_t*, idx, const T*, idx, idx, T*, int);

MH_INSTANTIATE_EMBEDDING(float)
MH_INSTANTIATE_EMBEDDING(double)

}  // namespace mh
