// Attention and AdditiveAttention layers: see attention_score_layers.h.
// Per batch entry: the (Tq, Tv) score matrix (one GEMM for dot scores, a
// loop over the features for the tanh scores), the masked row softmax, the
// dropout of the weights, and the (Tq, Dv) output as one GEMM.
#include "attention_score_layers.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <vector>

#include "dropout_rng.h"
#include "parallel.h"

namespace mh {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>>;
template <class T>
using MutMap = Eigen::Map<RowMat<T>>;

// Keras subtracts 1e9 from masked scores (65504 in float16, not used here).
constexpr double kMaskBias = 1.0e9;

// Raw scores of batch entry b into S (Tq, Tv); qb, kb point at its rows.
template <class T>
void batch_scores(const ScoreLayerDims& d, const ScoreLayerParams<T>& p, const T* qb, const T* kb,
                  RowMat<T>& S) {
  if (p.mode == ScoreMode::Dot) {
    S.noalias() = ConstMap<T>(qb, d.Tq, d.D) * ConstMap<T>(kb, d.Tv, d.D).transpose();
    if (p.scale) S *= p.scale[0];
    return;
  }
  for (idx i = 0; i < d.Tq; ++i) {
    const T* qi = qb + i * d.D;
    for (idx j = 0; j < d.Tv; ++j) {
      const T* kj = kb + j * d.D;
      T sum = T(0);
      if (p.mode == ScoreMode::Concat) {
        if (p.scale) {
          const T sc = p.scale[0];
          for (idx f = 0; f < d.D; ++f) sum += std::tanh(sc * (qi[f] + kj[f]));
        } else {
          for (idx f = 0; f < d.D; ++f) sum += std::tanh(qi[f] + kj[f]);
        }
        S(i, j) = p.concat_weight * sum;
      } else {
        if (p.scale) {
          for (idx f = 0; f < d.D; ++f) sum += p.scale[f] * std::tanh(qi[f] + kj[f]);
        } else {
          for (idx f = 0; f < d.D; ++f) sum += std::tanh(qi[f] + kj[f]);
        }
        S(i, j) = sum;
      }
    }
  }
}

// Masks (Keras: s - 1e9 where masked) and softmaxes the rows of S in place.
template <class T>
void masked_softmax(const ScoreLayerDims& d, const ScoreLayerParams<T>& p, idx b, RowMat<T>& S) {
  const int32_t* vm = p.vmask ? p.vmask + b * d.Tv : nullptr;
  const T bias = static_cast<T>(kMaskBias);
  for (idx i = 0; i < d.Tq; ++i) {
    T* row = S.data() + i * d.Tv;
    for (idx j = 0; j < d.Tv; ++j) {
      if (!std::isfinite(row[j])) {
        throw ScoreOverflow("attention scores overflow");
      }
      if ((vm && vm[j] == 0) || (p.causal && j > i)) row[j] = row[j] - bias;
    }
    T mx = row[0];
    for (idx j = 1; j < d.Tv; ++j) mx = std::max(mx, row[j]);
    T sum = T(0);
    for (idx j = 0; j < d.Tv; ++j) {
      row[j] = std::exp(row[j] - mx);
      sum += row[j];
    }
    for (idx j = 0; j < d.Tv; ++j) row[j] = row[j] / sum;
  }
}

// The dropout factor (keep / (1 - rate)) of element (b, i, j) is
// dropout_keep(key, b*Tq*Tv + i*Tv + j); W = P * factor, in place.
template <class T>
void apply_dropout(const ScoreLayerDims& d, const ScoreLayerParams<T>& p, idx b, T* W) {
  const idx n = d.Tq * d.Tv;
  const uint64_t base = static_cast<uint64_t>(b * n);
  const T inv_keep = static_cast<T>(1.0 / (1.0 - p.rate));
  for (idx e = 0; e < n; ++e) {
    W[e] = dropout_keep(p.key, base + static_cast<uint64_t>(e), p.rate) ? W[e] * inv_keep : T(0);
  }
}

template <class T>
int task_threads(const ScoreLayerDims& d, const ScoreLayerParams<T>& p, int threads) {
  const double tanh_cost = p.mode == ScoreMode::Dot ? 1.0 : 8.0;
  return threads_for_macs(static_cast<double>(d.B) * d.Tq * d.Tv * (tanh_cost * d.D + d.Dv), threads);
}

}  // namespace

template <class T>
void score_attention_forward(const ScoreLayerDims& d, const ScoreLayerParams<T>& p, const T* q,
                             const T* k, const T* v, T* out, T* weights, T* probs, int threads) {
  const idx TT = d.Tq * d.Tv;
  parallel_for(static_cast<long>(d.B), task_threads(d, p, threads), [&](long task) {
    const idx b = task;
    RowMat<T> S(d.Tq, d.Tv);
    batch_scores(d, p, q + b * d.Tq * d.D, k + b * d.Tv * d.D, S);
    masked_softmax(d, p, b, S);
    if (probs) std::copy(S.data(), S.data() + TT, probs + b * TT);
    if (p.rate > 0) apply_dropout(d, p, b, S.data());
    if (weights) std::copy(S.data(), S.data() + TT, weights + b * TT);
    MutMap<T> O(out + b * d.Tq * d.Dv, d.Tq, d.Dv);
    O.noalias() = S * ConstMap<T>(v + b * d.Tv * d.Dv, d.Tv, d.Dv);
    if (p.qmask) {
      const int32_t* qm = p.qmask + b * d.Tq;
      for (idx i = 0; i < d.Tq; ++i) {
        if (qm[i] == 0) O.row(i).setZero();
      }
    }
  });
}

template <class T>
void score_attention_backward(const ScoreLayerDims& d, const ScoreLayerParams<T>& p, const T* q,
                              const T* k, const T* v, const T* probs, const T* grad_out,
                              const T* grad_weights, T* dq, T* dk, T* dv, T* dscale, T* dconcat,
                              int threads) {
  const idx TT = d.Tq * d.Tv;
  const idx n_scale = p.scale == nullptr ? 0 : (p.mode == ScoreMode::Additive ? d.D : 1);
  // per-batch partial weight gradients: (B, n_scale) and (B)
  std::vector<T> part_scale(static_cast<size_t>(d.B * n_scale), T(0));
  std::vector<T> part_concat(static_cast<size_t>(d.B), T(0));
  parallel_for(static_cast<long>(d.B), task_threads(d, p, threads), [&](long task) {
    const idx b = task;
    const T* qb = q + b * d.Tq * d.D;
    const T* kb = k + b * d.Tv * d.D;
    ConstMap<T> V(v + b * d.Tv * d.Dv, d.Tv, d.Dv);
    ConstMap<T> P(probs + b * TT, d.Tq, d.Tv);
    // dL/dout with the rows the query mask zeroed set to zero
    RowMat<T> G = ConstMap<T>(grad_out + b * d.Tq * d.Dv, d.Tq, d.Dv);
    if (p.qmask) {
      const int32_t* qm = p.qmask + b * d.Tq;
      for (idx i = 0; i < d.Tq; ++i) {
        if (qm[i] == 0) G.row(i).setZero();
      }
    }
    // W: the weights used (P after dropout); dW = G V^T (+ grad of the returned weights)
    RowMat<T> dP(d.Tq, d.Tv);
    dP.noalias() = G * V.transpose();
    if (grad_weights) dP += ConstMap<T>(grad_weights + b * TT, d.Tq, d.Tv);
    MutMap<T> dV(dv + b * d.Tv * d.Dv, d.Tv, d.Dv);
    if (p.rate > 0) {
      RowMat<T> W = P;
      apply_dropout(d, p, b, W.data());
      dV.noalias() = W.transpose() * G;
      RowMat<T> factor = RowMat<T>::Ones(d.Tq, d.Tv);
      apply_dropout(d, p, b, factor.data());
      dP.array() *= factor.array();
    } else {
      dV.noalias() = P.transpose() * G;
    }
    // softmax backward: dS = P * (dP - rowsum(P * dP)); the masking is a shift (derivative 1)
    for (idx i = 0; i < d.Tq; ++i) {
      T dot = T(0);
      for (idx j = 0; j < d.Tv; ++j) dot += P(i, j) * dP(i, j);
      for (idx j = 0; j < d.Tv; ++j) dP(i, j) = P(i, j) * (dP(i, j) - dot);
    }
    const RowMat<T>& dS = dP;
    MutMap<T> dQ(dq + b * d.Tq * d.D, d.Tq, d.D);
    MutMap<T> dK(dk + b * d.Tv * d.D, d.Tv, d.D);
    ConstMap<T> Q(qb, d.Tq, d.D), K(kb, d.Tv, d.D);
    if (p.mode == ScoreMode::Dot) {
      // s = scale * (q k^T)
      if (p.scale) {
        RowMat<T> raw(d.Tq, d.Tv);
        raw.noalias() = Q * K.transpose();
        part_scale[b] = (dS.array() * raw.array()).sum();
        const T sc = p.scale[0];
        dQ.noalias() = sc * (dS * K);
        dK.noalias() = sc * (dS.transpose() * Q);
      } else {
        dQ.noalias() = dS * K;
        dK.noalias() = dS.transpose() * Q;
      }
      return;
    }
    dQ.setZero();
    dK.setZero();
    T* ps = n_scale ? part_scale.data() + b * n_scale : nullptr;
    T pc = T(0);
    for (idx i = 0; i < d.Tq; ++i) {
      const T* qi = qb + i * d.D;
      T* dqi = dQ.data() + i * d.D;
      for (idx j = 0; j < d.Tv; ++j) {
        const T g = dS(i, j);
        const T* kj = kb + j * d.D;
        T* dkj = dK.data() + j * d.D;
        if (p.mode == ScoreMode::Concat) {
          // s = c * sum_f tanh(u_f), u_f = scale * (q_f + k_f)
          const T sc = p.scale ? p.scale[0] : T(1);
          const T gc = g * p.concat_weight;
          T tsum = T(0), dsc = T(0);
          for (idx f = 0; f < d.D; ++f) {
            const T x = qi[f] + kj[f];
            const T t = std::tanh(p.scale ? sc * x : x);
            tsum += t;
            const T du = gc * (T(1) - t * t);
            dqi[f] += sc * du;
            dkj[f] += sc * du;
            dsc += du * x;
          }
          pc += g * tsum;
          if (ps) ps[0] += dsc;
        } else {
          // s = sum_f a_f tanh(q_f + k_f)
          for (idx f = 0; f < d.D; ++f) {
            const T t = std::tanh(qi[f] + kj[f]);
            const T a = p.scale ? p.scale[f] : T(1);
            const T du = g * a * (T(1) - t * t);
            dqi[f] += du;
            dkj[f] += du;
            if (ps) ps[f] += g * t;
          }
        }
      }
    }
    part_concat[b] = pc;
  });
  if (n_scale && dscale) {
    for (idx f = 0; f < n_scale; ++f) dscale[f] = T(0);
    for (idx b = 0; b < d.B; ++b) {
      for (idx f = 0; f < n_scale; ++f) dscale[f] += part_scale[b * n_scale + f];
    }
  }
  if (p.mode == ScoreMode::Concat && dconcat) {
    T s = T(0);
    for (idx b = 0; b < d.B; ++b) s += part_concat[b];
    *dconcat = s;
  }
}

#define MH_INSTANTIATE_SCORE_LAYERS(T)                                                          \
  template void score_attention_forward<T>(const ScoreLayerDims&, const ScoreLayerParams<T>&,   \
                                           const T*, const T*, const T*, T*, T*, T*, int);      \
  template void score_attention_backward<T>(const ScoreLayerDims&, const ScoreLayerParams<T>&,  \
                                            const T*, const T*, const T*, const T*, const T*,   \
                                            const T*, T*, T*, T*, T*, T*, int);

MH_INSTANTIATE_SCORE_LAYERS(float)
MH_INSTANTIATE_SCORE_LAYERS(double)

}  // namespace mh
