// Flash attention: exact scaled dot-product attention computed tile by tile
// with an online softmax, never storing the (T, S) probabilities. Same
// layouts, masks, dropout stream and all-masked-row convention as the
// materialised kernel (attention.h); results agree to float rounding.
//
// Memory beyond the inputs and outputs: the row log-sum-exp (B, N, T) kept
// for the backward pass, fixed-size tiles per task, and in the backward pass
// a (T) vector per (batch, head) plus, when B*N is small, a few (T, H)
// partial query gradients. Nothing is proportional to T * S.
#pragma once

#include "layout.h"

namespace mh {

// ctx (B, T, N, Hv) = softmax(scale * q k^T, masked) [dropout] v.
// q (B, T, N, H), k (B, S, N, H), v (B, S, N, Hv).
// lse (B, N, T): the row log-sum-exp of the masked, scaled logits, +Inf for
// rows where every key is masked (their context is zero).
template <class T>
void flash_attention_forward(const MhaDims& d, const T* q, const T* k, const T* v,
                             const AttentionMask& mask, const DropoutSpec& drop, T scale, T* ctx,
                             T* lse, int threads);

// Gradients from the forward's ctx and lse and dctx (B, T, N, Hv); the
// probabilities (and the dropout mask) are recomputed tile by tile.
// Writes dq (B, T, N, H), dk (B, S, N, H), dv (B, S, N, Hv) (overwritten).
template <class T>
void flash_attention_backward(const MhaDims& d, const T* q, const T* k, const T* v,
                              const T* ctx, const T* lse, const AttentionMask& mask,
                              const DropoutSpec& drop, T scale, const T* dctx, T* dq, T* dk,
                              T* dv, int threads);

}  // namespace mh
