// Scaled dot-product attention over all heads, materialising the (T, S)
// probabilities of each (batch, head): needed when scores are returned and
// used by the backward pass. Layouts in layout.h.
#pragma once

#include "layout.h"

namespace mh {

// ctx (B, T, N, Hv) = softmax(scale * q k^T, masked) [dropout] v.
// q (B, T, N, H), k (B, S, N, H), v (B, S, N, Hv).
// probs (B, N, T, S): written when non-null (pre-dropout probabilities).
template <class T>
void attention_forward(const MhaDims& d, const T* q, const T* k, const T* v,
                       const AttentionMask& mask, const DropoutSpec& drop, T scale, T* ctx,
                       T* probs, int threads);

// Gradients given the saved probabilities and dctx (B, T, N, Hv).
// Writes dq (B, T, N, H), dk (B, S, N, H), dv (B, S, N, Hv) (overwritten).
template <class T>
void attention_backward(const MhaDims& d, const T* q, const T* k, const T* v, const T* probs,
                        const DropoutSpec& drop, T scale, const T* dctx, T* dq, T* dk, T* dv,
                        int threads);

}  // namespace mh
