// Cached (key/value) attention for incremental decoding, with the semantics
// of keras_hub's CachedMultiHeadAttention: the cache holds the projected
// keys and values of earlier positions; a call projects the query and, with
// an update, the new keys and values, writes those into the cache at the
// update index, and attends over the cache with the flash kernel
// (flash_attention.h). Inference only: no dropout, no backward pass.
#pragma once

#include "mha.h"

namespace mh {

// The key/value cache where the caller keeps it: a column-major double
// array (B, 2, s_max, Nkv, H), R's layout of keras_hub's cache of shape
// (batch, 2, max_length, num_heads, head_dim): element (b, c, s, n, h) at
// data[b + B * (c + 2 * (s + s_max * (n + Nkv * h)))], c = 0 for keys and
// 1 for values. Values of a float computation are floats stored as doubles.
struct KeyValueCache {
  double* data = nullptr;
  idx s_max = 0;
};

// Thrown when a cache value read by a call is NA, NaN or Inf (or, in a float
// computation, a double beyond float's range).
struct NonFiniteCache : std::invalid_argument {
  NonFiniteCache() : std::invalid_argument("multihead core: the key/value cache holds NA, NaN or Inf") {}
};

// out (B, T, O) for the query rows xq (B, T, E) against cache positions
// [0, d.S) (d.S <= cache.s_max; d.H == d.Hv). With update_rows U > 0, the
// key and value inputs xk (B, U, Dk) and xv (B, U, Dv) are projected and
// written at positions [update_index, update_index + U) first. The mask's
// query_offset places query row t at position query_offset + t for the
// causal flag and the window; an explicit mask is (Bm, Nm, T, d.S).
template <class T>
void mha_cached_forward(const MhaDims& d, const T* xq, const T* xk, const T* xv, idx update_rows,
                        idx update_index, const MhaWeights<T>& w, const AttentionMask& mask,
                        const KeyValueCache& cache, int threads, T* out);

}  // namespace mh
