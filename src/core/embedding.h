// Embedding lookup (Keras Embedding), forward and backward.
//   ids   (n)      int32 in [0, V)
//   table (V, D)   row-major: row v is the embedding of id v
//   out   (n, D)   out[i, ] = table[ids[i], ]
#pragma once

#include <cstdint>

#include "layout.h"

namespace mh {

// Throws std::out_of_range for an id outside [0, V).
template <class T>
void embedding_forward(const int32_t* ids, idx n, const T* table, idx V, idx D, T* out,
                       int threads);

// dtable (V, D) = scatter-add of dout's rows: dtable[v, ] = sum over i with
// ids[i] == v of dout[i, ] (in increasing i; zero for ids never seen).
template <class T>
void embedding_backward(const int32_t* ids, idx n, const T* dout, idx V, idx D, T* dtable,
                        int threads);

}  // namespace mh
