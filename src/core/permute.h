// Axis permutation with type conversion: the one copy between R's
// column-major arrays and the core's row-major layout.
#pragma once

#include <stdexcept>
#include <vector>

#include "layout.h"

namespace mh {

// src: column-major array with dims sdim[0..rank). dst: column-major array
// with dims sdim[perm[k]], i.e. dst axis k is src axis perm[k]. Each element
// is converted with static_cast<D>.
template <class S, class D>
void permute_copy(const S* src, const std::vector<idx>& sdim, const std::vector<int>& perm,
                  D* dst) {
  const int rank = static_cast<int>(sdim.size());
  if (static_cast<int>(perm.size()) != rank) throw std::invalid_argument("permute_copy: rank");
  std::vector<char> seen(rank, 0);
  for (int k = 0; k < rank; ++k) {
    if (perm[k] < 0 || perm[k] >= rank || seen[perm[k]]++ || sdim[k] < 0)
      throw std::invalid_argument("permute_copy: perm is not a permutation or a dim is negative");
  }
  idx total = 1;
  std::vector<idx> sstride(rank), ddim(rank), dstep(rank);
  for (int i = 0; i < rank; ++i) {
    sstride[i] = (i == 0) ? 1 : sstride[i - 1] * sdim[i - 1];
    total *= sdim[i];
  }
  if (total == 0) return;
  if (rank == 0) {
    dst[0] = static_cast<D>(src[0]);
    return;
  }
  for (int k = 0; k < rank; ++k) {
    ddim[k] = sdim[perm[k]];
    dstep[k] = sstride[perm[k]];
  }
  const idx n0 = ddim[0], s0 = dstep[0];
  std::vector<idx> counter(rank, 0);
  idx offset = 0;
  for (idx done = 0; done < total; done += n0) {
    const S* p = src + offset;
    if (s0 == 1) {
      for (idx i = 0; i < n0; ++i) dst[i] = static_cast<D>(p[i]);
    } else {
      for (idx i = 0; i < n0; ++i) dst[i] = static_cast<D>(p[i * s0]);
    }
    dst += n0;
    for (int k = 1; k < rank; ++k) {  // odometer over dst axes 1..rank-1
      offset += dstep[k];
      if (++counter[k] < ddim[k]) break;
      offset -= dstep[k] * ddim[k];
      counter[k] = 0;
    }
  }
}

}  // namespace mh
