// Dropout layer (Keras Dropout) with an optional broadcast noise shape.
//   x, y   row-major with dims `dims`
//   noise  dims of the random mask: noise[k] == dims[k] or 1 (the mask is
//          shared along axes where it is 1)
// y = x * keep / (1 - rate), where keep for element (i_0, ..., i_r-1) is
// dropout_keep(key, j) (dropout_rng.h) with j the row-major index of
// (i_k if noise[k] > 1 else 0) in the mask. rate >= 1 gives zeros. The
// mask is a pure function of (key, j), so the backward pass (the same
// function applied to dL/dy) regenerates it exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "layout.h"

namespace mh {

template <class T>
void dropout_apply(const T* x, const std::vector<idx>& dims, const std::vector<idx>& noise,
                   double rate, uint64_t key, T* y, int threads);

}  // namespace mh
