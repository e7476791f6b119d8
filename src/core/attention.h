// Scaled dot-product attention over all heads, materialising the (T, S)
// probabilities of each (batch, head): needed when scores are returned and
// used by the backward pass. Layouts in layout.h.
#pragma once

#include "layout.h"

namespace mh {

// ctx (B, T, N, Hv) = softmax(scale * q k^T, masked) [dropout] v.
// q (B, T, N, H), k (B, S, Nkv, H), v (B, S, Nkv, Hv): query head n attends
// with key/value head kv_head_of(d, n) (layout.h), read in place.
// probs (B, N, T, S): written when non-null (pre-dropout probabilities).
template <class T>
void attention_forward(const MhaDims& d, const T* q, const T* k, const T* v,
                       const AttentionMask& mask, const DropoutSpec& drop, T scale, T* ctx,
                       T* probs, int threads);

// Gradients given the saved probabilities and dctx (B, T, N, Hv).
// Writes dq (B, T, N, H), dk (B, S, Nkv, H), dv (B, S, Nkv, Hv) (overwritten;
// a key/value head's gradients sum its query heads' terms in head order).
template <class T>
void attention_backward(const MhaDims& d, const T* q, const T* k, const T* v, const T* probs,
                        const DropoutSpec& drop, T scale, const T* dctx, T* dq, T* dk, T* dv,
                        int threads);

}  // namespace mh
