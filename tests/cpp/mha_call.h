// Calls mha_forward / mha_backward (mha.h) whatever their signature.
#pragma once

#include <type_traits>
#include <vector>

#include "mha.h"

namespace mhtest {

// The flash-attention work adds a `flash` flag to mha_forward and the mask to
// mha_backward (which may consume the cache). These wrappers call whichever
// signature the core has, so the tests also cover the flash path once it
// exists.
template <class T>
using FlashForward = void (*)(const mh::MhaDims&, const T*, const T*, const T*,
                              const mh::MhaWeights<T>&, const mh::AttentionMask&,
                              const mh::DropoutSpec&, bool, int, T*, T*, mh::MhaCache<T>*);
constexpr bool kHasFlash =
    std::is_same_v<decltype(&mh::mha_forward<double>), FlashForward<double>>;

template <class T>
void run_mha_forward(const mh::MhaDims& d, const T* xq, const T* xk, const T* xv,
                     const mh::MhaWeights<T>& w, const mh::AttentionMask& m,
                     const mh::DropoutSpec& drop, bool flash, int threads, T* out, T* scores,
                     mh::MhaCache<T>* cache) {
  if constexpr (std::is_same_v<decltype(&mh::mha_forward<T>), FlashForward<T>>) {
    mh::mha_forward(d, xq, xk, xv, w, m, drop, flash, threads, out, scores, cache);
  } else {
    (void)flash;
    mh::mha_forward(d, xq, xk, xv, w, m, drop, threads, out, scores, cache);
  }
}

template <class T>
void run_mha_backward(const mh::MhaDims& d, const T* xq, const T* xk, const T* xv,
                      const mh::MhaWeights<T>& w, const mh::AttentionMask& m,
                      const mh::DropoutSpec& drop, mh::MhaCache<T>& cache, const T* dout,
                      const mh::MhaGrads<T>& g, int threads) {
  if constexpr (std::is_same_v<decltype(&mh::mha_forward<T>), FlashForward<T>>) {
    mh::mha_backward(d, xq, xk, xv, w, m, drop, cache, dout, g, threads);
  } else {
    (void)m;
    mh::mha_backward(d, xq, xk, xv, w, drop, cache, dout, g, threads);
  }
}

// The attention kernels mha_forward can use: materialised (false) and, once
// the core has it, flash (true).
inline std::vector<bool> mha_kernels() {
  return kHasFlash ? std::vector<bool>{false, true} : std::vector<bool>{false};
}

}  // namespace mhtest
