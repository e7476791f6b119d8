// Elementwise sum of k tensors of one shape (Keras Add): y = x_1 + ... + x_k,
// added in input order. Its backward is the identity for every input.
#pragma once

#include <vector>

#include "layout.h"

namespace mh {

template <class T>
void add_forward(const std::vector<const T*>& xs, idx n, T* y, int threads);

}  // namespace mh
