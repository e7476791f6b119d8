// Axis permutation with type conversion: the one copy between R's
// column-major arrays and the core's row-major layout.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "layout.h"
#include "parallel.h"

namespace mh {

namespace detail {

// Copies the block lo[k] <= i_k < hi[k] (dst axes k) of a permutation:
// dst[sum i_k dstride[k]] = src[sum i_k sstep[k]]. Splits the longest axis in
// halves until the block fits in cache, so reads and writes both stay local
// whatever the permutation (a cache-oblivious transpose).
template <class S, class D>
void permute_block(const S* src, D* dst, const std::vector<idx>& sstep,
                   const std::vector<idx>& dstride, std::vector<idx>& lo,
                   std::vector<idx>& hi) {
  const int rank = static_cast<int>(lo.size());
  idx count = 1, longest = 0;
  int axis = 0;
  for (int k = 0; k < rank; ++k) {
    const idx n = hi[k] - lo[k];
    count *= n;
    if (n > longest) { longest = n; axis = k; }
  }
  if (count == 0) return;
  if (count > 2048 && longest > 1) {
    const idx mid = lo[axis] + longest / 2, old_hi = hi[axis], old_lo = lo[axis];
    hi[axis] = mid;
    permute_block(src, dst, sstep, dstride, lo, hi);
    hi[axis] = old_hi;
    lo[axis] = mid;
    permute_block(src, dst, sstep, dstride, lo, hi);
    lo[axis] = old_lo;
    return;
  }
  idx soff = 0, doff = 0;
  for (int k = 0; k < rank; ++k) {
    soff += lo[k] * sstep[k];
    doff += lo[k] * dstride[k];
  }
  const idx n0 = hi[0] - lo[0], s0 = sstep[0];
  std::vector<idx> counter(lo);
  for (idx done = 0; done < count; done += n0) {
    const S* p = src + soff;
    D* q = dst + doff;
    if (s0 == 1) {
      for (idx i = 0; i < n0; ++i) q[i] = static_cast<D>(p[i]);
    } else {
      for (idx i = 0; i < n0; ++i) q[i] = static_cast<D>(p[i * s0]);
    }
    for (int k = 1; k < rank; ++k) {  // odometer over axes 1..rank-1
      soff += sstep[k];
      doff += dstride[k];
      if (++counter[k] < hi[k]) break;
      soff -= sstep[k] * (hi[k] - lo[k]);
      doff -= dstride[k] * (hi[k] - lo[k]);
      counter[k] = lo[k];
    }
  }
}

}  // namespace detail

// src: column-major array with dims sdim[0..rank). dst: column-major array
// with dims sdim[perm[k]], i.e. dst axis k is src axis perm[k]. Each element
// is converted with static_cast<D>. Large copies are split over `threads`
// threads along the longest axis (a pure copy: the split cannot change it).
template <class S, class D>
void permute_copy(const S* src, const std::vector<idx>& sdim, const std::vector<int>& perm,
                  D* dst, int threads = 1) {
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
  std::vector<idx> dstride(rank), lo(rank, 0);
  for (int k = 0; k < rank; ++k) dstride[k] = (k == 0) ? 1 : dstride[k - 1] * ddim[k - 1];
  int axis = 0;
  for (int k = 1; k < rank; ++k)
    if (ddim[k] > ddim[axis]) axis = k;
  const idx parts = threads_for_elements(static_cast<double>(total), threads) > 1
                        ? std::min<idx>(ddim[axis], 8 * threads) : 1;
  parallel_for(static_cast<long>(parts), threads, [&](long part) {
    std::vector<idx> plo(lo), phi(ddim);
    plo[axis] = ddim[axis] * part / parts;
    phi[axis] = ddim[axis] * (part + 1) / parts;
    detail::permute_block(src, dst, dstep, dstride, plo, phi);
  });
}

}  // namespace mh
