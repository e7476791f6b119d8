// Counter-based random numbers for attention dropout.
//
// keep(b, n, t, s) depends only on (key, flat index of (b, n, t, s) in the
// (B, N, T, S) probabilities), so forward and backward, the materialised and
// the flash kernels, and any number of threads see the same mask.
#pragma once

#include <cstdint>

namespace mh {

// SplitMix64 finaliser: a bijective 64-bit mixer with good avalanche.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Stream key for one layer call: seed and call counter mixed together.
inline uint64_t dropout_key(uint64_t seed, uint64_t counter) {
  return mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ (counter * 0xd1b54a32d192ed03ULL + 1));
}

// Uniform double in [0, 1) for element `i` of the stream `key`.
inline double dropout_uniform(uint64_t key, uint64_t i) {
  return static_cast<double>(mix64(key ^ mix64(i * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL)) >> 11) *
         (1.0 / 9007199254740992.0);
}

// True if element `i` is kept (probability 1 - rate).
inline bool dropout_keep(uint64_t key, uint64_t i, double rate) {
  return dropout_uniform(key, i) >= rate;
}

}  // namespace mh
