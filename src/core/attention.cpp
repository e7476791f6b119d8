// Materialised attention: one task per (batch, head); each task computes its
// (T, S) logits with one GEMM, a masked row softmax, and the context with a
// second GEMM. Tasks write disjoint blocks, so any thread count gives the same
// bits.
#include "attention.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention_mask.h"
#include "cpu_dispatch.h"
#include "packed_gemm.h"
#include "dropout_rng.h"
#include "parallel.h"

namespace mh {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using HeadMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstHeadMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

// Turns the raw logits of row t into probabilities in place. Returns false
// when a logit is beyond T's range (+-Inf or NaN where a key is allowed).
template <class T>
bool softmax_row(T* row, idx S, T scale, const MaskRow* mrow) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  T mx = neg_inf;
  if (mrow) {
    if (!mrow->query_ok()) {
      for (idx s = 0; s < S; ++s) row[s] = T(0);
      return true;
    }
    bool any = false;
    for (idx s = 0; s < S; ++s) {
      const bool ok = mrow->allowed(s);
      any = any || ok;
      row[s] = ok ? row[s] * scale : neg_inf;
      if (row[s] > mx) mx = row[s];
    }
    if (mx == neg_inf) {  // every key masked: all-zero probabilities
      for (idx s = 0; s < S; ++s) row[s] = T(0);
      return !any;  // an allowed key at -Inf: a logit below T's range
    }
  } else {
    if (S == 0) return true;  // no key: nothing to normalise
    for (idx s = 0; s < S; ++s) {
      row[s] *= scale;
      if (row[s] > mx) mx = row[s];
    }
  }
  T sum = T(0);
  for (idx s = 0; s < S; ++s) {
    const T e = std::exp(row[s] - mx);  // exp(-inf) == 0 for masked keys
    row[s] = e;
    sum += e;
  }
  // the largest term is exp(0) = 1 unless a logit was +-Inf or NaN
  if (!(sum >= T(1)) || !(mx < std::numeric_limits<T>::infinity())) return false;
  const T inv = T(1) / sum;
  for (idx s = 0; s < S; ++s) row[s] *= inv;
  return true;
}

// Applies inverted dropout to the probabilities P (T, S) of head (b, n) into
// out: out = P * keep / (1 - rate).
template <class T>
void dropout_probs(const MhaDims& d, const DropoutSpec& drop, idx b, idx n, const T* P, T* out) {
  const idx TS = d.T * d.S;
  const uint64_t base = static_cast<uint64_t>((b * d.N + n) * TS);
  if (drop.rate >= 1.0) {
    for (idx i = 0; i < TS; ++i) out[i] = T(0);
    return;
  }
  const T inv_keep = T(1.0 / (1.0 - drop.rate));
  for (idx i = 0; i < TS; ++i) {
    out[i] = dropout_keep(drop.key, base + static_cast<uint64_t>(i), drop.rate) ? P[i] * inv_keep
                                                                                 : T(0);
  }
}

}  // namespace

template <class T>
void attention_forward(const MhaDims& d, const T* q, const T* k, const T* v,
                       const AttentionMask& mask, const DropoutSpec& drop, T scale, T* ctx,
                       T* probs, int threads) {
  const idx G = kv_heads(d);
  const idx qs = d.N * d.H, cs = d.N * d.Hv, ks = G * d.H, vs = G * d.Hv, TS = d.T * d.S;
  threads = threads_for_macs(static_cast<double>(d.B * d.N) * TS * (d.H + d.Hv), threads);
  const bool masked = mask.any();
  std::vector<char> overflow(static_cast<size_t>(d.B * d.N), 0);  // one flag per task
  // float products on the AVX2 + FMA kernels (packed_gemm.h) when dispatched
  const bool fast = std::is_same<T, float>::value && use_avx2();
  parallel_for(static_cast<long>(d.B * d.N), threads, [&](long task) {
    const idx b = task / d.N, n = task % d.N, g = kv_head_of(d, n);
    ConstHeadMap<T> Q(q + b * d.T * qs + n * d.H, d.T, d.H, Eigen::OuterStride<>(qs));
    ConstHeadMap<T> K(k + b * d.S * ks + g * d.H, d.S, d.H, Eigen::OuterStride<>(ks));
    ConstHeadMap<T> V(v + b * d.S * vs + g * d.Hv, d.S, d.Hv, Eigen::OuterStride<>(vs));
    HeadMap<T> C(ctx + b * d.T * cs + n * d.Hv, d.T, d.Hv, Eigen::OuterStride<>(cs));

    // Always work in an aligned task-local buffer: Eigen's vectorised
    // products round differently for differently aligned operands, and the
    // output must not depend on whether scores were requested.
    RowMat<T> P(d.T, d.S);
    if (fast) {
      gemm(d.T, d.S, d.H, Q.data(), qs, 1, K.data(), 1, ks, P.data(), d.S, false);
    } else {
      P.noalias() = Q * K.transpose();
    }
    T* pbuf = P.data();
    bool ok = true;
    for (idx t = 0; t < d.T; ++t) {
      if (masked) {
        MaskRow mrow(mask, d, b, n, t);
        ok = softmax_row(pbuf + t * d.S, d.S, scale, &mrow) && ok;
      } else {
        ok = softmax_row<T>(pbuf + t * d.S, d.S, scale, nullptr) && ok;
      }
    }
    if (!ok) {
      overflow[static_cast<size_t>(task)] = 1;
      return;
    }
    if (probs) std::copy(pbuf, pbuf + TS, probs + task * TS);
    if (drop.active()) {
      RowMat<T> Pd(d.T, d.S);
      dropout_probs(d, drop, b, n, pbuf, Pd.data());
      if (fast) gemm(d.T, d.Hv, d.S, Pd.data(), d.S, 1, V.data(), vs, 1, C.data(), cs, false);
      else C.noalias() = Pd * V;
    } else {
      if (fast) gemm(d.T, d.Hv, d.S, pbuf, d.S, 1, V.data(), vs, 1, C.data(), cs, false);
      else C.noalias() = P * V;
    }
  });
  if (std::find(overflow.begin(), overflow.end(), 1) != overflow.end()) throw LogitOverflow();
}

template <class T>
void attention_backward(const MhaDims& d, const T* q, const T* k, const T* v, const T* probs,
                        const DropoutSpec& drop, T scale, const T* dctx, T* dq, T* dk, T* dv,
                        int threads) {
  // One task per (batch, key/value head): it runs the group's query heads in
  // order, the first writing dK and dV, the others adding to them, so the
  // sums over a group have a fixed order for any thread count.
  const idx G = kv_heads(d), R = d.N / G;
  const idx qs = d.N * d.H, cs = d.N * d.Hv, ks = G * d.H, vs = G * d.Hv, TS = d.T * d.S;
  threads = threads_for_macs(static_cast<double>(d.B * d.N) * TS * (d.H + d.Hv), threads);
  const bool fast = std::is_same<T, float>::value && use_avx2();  // as in the forward
  parallel_for(static_cast<long>(d.B * G), threads, [&](long task) {
    const idx b = task / G, g = task % G;
    ConstHeadMap<T> K(k + b * d.S * ks + g * d.H, d.S, d.H, Eigen::OuterStride<>(ks));
    ConstHeadMap<T> V(v + b * d.S * vs + g * d.Hv, d.S, d.Hv, Eigen::OuterStride<>(vs));
    HeadMap<T> dK(dk + b * d.S * ks + g * d.H, d.S, d.H, Eigen::OuterStride<>(ks));
    HeadMap<T> dV(dv + b * d.S * vs + g * d.Hv, d.S, d.Hv, Eigen::OuterStride<>(vs));
    RowMat<T> dP(d.T, d.S);
    for (idx n = g * R; n < (g + 1) * R; ++n) {
      const bool first = n == g * R;
      const idx bn = b * d.N + n;
      ConstHeadMap<T> Q(q + b * d.T * qs + n * d.H, d.T, d.H, Eigen::OuterStride<>(qs));
      ConstHeadMap<T> dC(dctx + b * d.T * cs + n * d.Hv, d.T, d.Hv, Eigen::OuterStride<>(cs));
      HeadMap<T> dQ(dq + b * d.T * qs + n * d.H, d.T, d.H, Eigen::OuterStride<>(qs));
      const RowMat<T> P = Eigen::Map<const RowMat<T>>(probs + bn * TS, d.T, d.S);

      // dP (T, S) = dC V^T; with dropout the context used P_drop, so
      // dV = P_drop^T dC and dP = (dC V^T) * keep / (1 - rate).
      if (fast) gemm(d.T, d.S, d.Hv, dC.data(), cs, 1, V.data(), 1, vs, dP.data(), d.S, false);
      else dP.noalias() = dC * V.transpose();
      if (drop.active()) {
        RowMat<T> Pd(d.T, d.S);
        dropout_probs(d, drop, b, n, P.data(), Pd.data());
        if (fast) gemm(d.S, d.Hv, d.T, Pd.data(), 1, d.S, dC.data(), cs, 1, dV.data(), vs, !first);
        else if (first) dV.noalias() = Pd.transpose() * dC; else dV.noalias() += Pd.transpose() * dC;
        // The keep mask scaled by 1/(1-rate) is Pd / P where P > 0; recompute
        // it directly to avoid dividing.
        RowMat<T> ones = RowMat<T>::Ones(d.T, d.S);
        RowMat<T> scale_mask(d.T, d.S);
        dropout_probs(d, drop, b, n, ones.data(), scale_mask.data());
        dP.array() *= scale_mask.array();
      } else if (fast) {
        gemm(d.S, d.Hv, d.T, P.data(), 1, d.S, dC.data(), cs, 1, dV.data(), vs, !first);
      } else {
        if (first) dV.noalias() = P.transpose() * dC; else dV.noalias() += P.transpose() * dC;
      }
      // Softmax backward: dS = P * (dP - rowsum(P * dP)).
      for (idx t = 0; t < d.T; ++t) {
        T dot = T(0);
        for (idx s = 0; s < d.S; ++s) dot += P(t, s) * dP(t, s);
        for (idx s = 0; s < d.S; ++s) dP(t, s) = P(t, s) * (dP(t, s) - dot);
      }
      // logits = scale * q k^T
      if (fast) {  // dQ = (scale dS) K, dK (+)= (scale dS)^T Q
        dP *= scale;
        gemm(d.T, d.H, d.S, dP.data(), d.S, 1, K.data(), ks, 1, dQ.data(), qs, false);
        gemm(d.S, d.H, d.T, dP.data(), 1, d.S, Q.data(), qs, 1, dK.data(), ks, !first);
        continue;
      }
      dQ.noalias() = scale * (dP * K);
      if (first) dK.noalias() = scale * (dP.transpose() * Q);
      else dK.noalias() += scale * (dP.transpose() * Q);
    }
  });
}

#define MH_INSTANTIATE_ATTENTION(T)                                                          \
  template void attention_forward<T>(const MhaDims&, const T*, const T*, const T*,           \
                                     const AttentionMask&, const DropoutSpec&, T, T*, T*, int); \
  template void attention_backward<T>(const MhaDims&, const T*, const T*, const T*, const T*,  \
                                      const DropoutSpec&, T, const T*, T*, T*, T*, int);

MH_INSTANTIATE_ATTENTION(float)
MH_INSTANTIATE_ATTENTION(double)

}  // namespace mh
