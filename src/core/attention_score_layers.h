// Keras's Attention (Luong, "dot" and "concat" scores) and AdditiveAttention
// (Bahdanau) layers: weightless attention of a query over a value (and key),
// forward and backward.
//
// LAYOUT (row-major, see layout.h):
//   q        (B, Tq, D)    query
//   k        (B, Tv, D)    key (the same pointer as v when no key is given)
//   v        (B, Tv, Dv)   value
//   out      (B, Tq, Dv)   output
//   probs    (B, Tq, Tv)   softmax of the masked scores, before dropout
//   weights  (B, Tq, Tv)   the weights applied to v: probs after dropout
//                          (what Keras returns as the attention scores)
//   qmask    (B, Tq), vmask (B, Tv): int32, nonzero = present
//
// SCORES s(b, i, j) for query row i and key row j:
//   Dot       q_i . k_j, then times scale (a scalar) when given
//   Concat    c * sum_d tanh(scale * (q_id + k_jd))  (no scale when absent)
//   Additive  sum_d scale_d * tanh(q_id + k_jd)       (scale_d = 1 when absent)
// MASKING as Keras's _apply_scores(): where value_mask is false for key j, or
// j > i under the causal mask, the score becomes s - 1e9 (computed in T, so
// in float32 it rounds to about -1e9 and a row with every key masked gets
// uniform weights, as in Keras). probs = softmax over j. With dropout the
// weights are probs * keep / (1 - rate) with keep = dropout_keep(key, flat
// index of (b, i, j)) (dropout_rng.h). out = weights . v, and rows of out
// where the query mask is false are zero.
//
// One task per batch entry b: it writes only its own rows of out, weights,
// probs, dq, dk, dv and its own slot of the per-batch weight-gradient
// partials, which are then summed in batch order, so results are bitwise
// identical for any thread count.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "layout.h"

namespace mh {

enum class ScoreMode : int { Dot = 0, Concat = 1, Additive = 2 };

struct ScoreLayerDims {
  idx B, Tq, Tv, D, Dv;
};

template <class T>
struct ScoreLayerParams {
  ScoreMode mode = ScoreMode::Dot;
  const T* scale = nullptr;       // nullptr, 1 value (Dot, Concat) or D values (Additive)
  T concat_weight = T(1);         // Concat only
  const int32_t* qmask = nullptr; // (B, Tq) or nullptr
  const int32_t* vmask = nullptr; // (B, Tv) or nullptr
  bool causal = false;
  double rate = 0.0;              // dropout rate on the weights; 0 = none
  uint64_t key = 0;               // dropout stream key (dropout_key(seed, counter))
};

// Thrown when a score is not finite (overflow of T, e.g. float32 dot
// products beyond 3.4e38): the result would be NaN.
struct ScoreOverflow : std::overflow_error {
  using std::overflow_error::overflow_error;
};

// out, and optionally weights and probs (nullptr to skip).
template <class T>
void score_attention_forward(const ScoreLayerDims& d, const ScoreLayerParams<T>& p, const T* q,
                             const T* k, const T* v, T* out, T* weights, T* probs, int threads);

// Gradients from grad_out (B, Tq, Dv) and grad_weights (B, Tq, Tv, the
// gradient of the returned weights; nullptr = zero), given the forward's
// probs: dq (B, Tq, D), dk (B, Tv, D), dv (B, Tv, Dv), dscale (1 or D values;
// untouched when there is no scale) and dconcat (Concat only).
template <class T>
void score_attention_backward(const ScoreLayerDims& d, const ScoreLayerParams<T>& p, const T* q,
                              const T* k, const T* v, const T* probs, const T* grad_out,
                              const T* grad_weights, T* dq, T* dk, T* dv, T* dscale, T* dconcat,
                              int threads);

}  // namespace mh
