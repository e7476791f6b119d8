// Flash attention: see flash_attention.h.
//
// Forward: one task per (batch, head, query tile). For each key tile the
// task computes the logits tile with one GEMM, updates the running row maximum
// m and row sum l of the online softmax (rescaling what it accumulated so far
// by alpha = exp(m_old - m_new)), and adds P_tile V_tile with a second GEMM.
// At the end ctx = acc / l and lse = m + log(l).
//
// Backward: D = rowsum(dctx * ctx). One task per (batch, head, key chunk),
// a chunk being a fixed set of key tiles; for each key tile and each query
// tile that can see it, the task recomputes P = exp(scale * q k^T - lse),
// dP = dctx v^T (times the dropout mask), dS = P * (dP - D), and accumulates
// dV += P_drop^T dctx, dK += dS^T q and its own partial dQ += dS k. The
// partial dQs are summed in chunk order afterwards. The split depends only on
// the shapes, so any thread count gives the same bits.
//
// Key tiles entirely outside the causal / sliding-window band of a query tile
// are skipped (MaskRow::key_begin / key_end), so causal attention costs about
// half.
#include "flash_attention.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attention_mask.h"
#include "dropout_rng.h"
#include "parallel.h"

namespace mh {

namespace {

// Tile sizes (rows of q per query tile, rows of k/v per key tile), chosen by
// measurement on AVX2+FMA (see bench/README.md).
constexpr idx kForwardQueryTile = 64;
constexpr idx kForwardKeyTile = 128;
constexpr idx kBackwardQueryTile = 64;
constexpr idx kBackwardKeyTile = 128;
// The backward pass splits each (batch, head) into key chunks until there
// are at least this many tasks (a function of the shapes only).
constexpr idx kMinBackwardTasks = 8;

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using TileMap = Eigen::Map<RowMat<T>, Eigen::Aligned16>;
template <class T>
using HeadMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstHeadMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using RowArrayMap = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;

idx ceil_div(idx a, idx b) { return (a + b - 1) / b; }

// Dropout factor of probability element (b, n, t, s): 1/(1-rate) if kept,
// else 0 (the same decision as the materialised kernel).
template <class T>
class DropoutRow {
 public:
  DropoutRow(const DropoutSpec& drop, const MhaDims& d, idx b, idx n, idx t)
      : key_(drop.key), rate_(drop.rate),
        base_(static_cast<uint64_t>(((b * d.N + n) * d.T + t) * d.S)),
        inv_keep_(drop.rate >= 1.0 ? T(0) : T(1.0 / (1.0 - drop.rate))) {}
  T factor(idx s) const {
    if (rate_ >= 1.0) return T(0);
    return dropout_keep(key_, base_ + static_cast<uint64_t>(s), rate_) ? inv_keep_ : T(0);
  }

 private:
  uint64_t key_;
  double rate_;
  uint64_t base_;
  T inv_keep_;
};

// Whether the keys [s0, s1) of row `mrow` need an element-wise mask: always
// with an explicit or key mask, else only where the tile crosses the edge of
// the causal / window band.
inline bool needs_element_mask(const AttentionMask& mask, const MaskRow& mrow, idx s0, idx s1,
                               idx S) {
  return mask.mask || mask.kmask || s0 < mrow.key_begin() || s1 > mrow.key_end(S);
}

// The query rows [lo, hi) whose causal / window band meets keys [s0, s1).
// The band's ends never decrease with t, so this is an interval.
void query_range_for_keys(const AttentionMask& mask, const MhaDims& d, idx s0, idx s1, idx* lo,
                          idx* hi) {
  if (!mask.causal && mask.window <= 0) {
    *lo = 0;
    *hi = d.T;
    return;
  }
  auto end_of = [&](idx t) { return MaskRow(mask, d, 0, 0, t).key_end(d.S); };
  auto begin_of = [&](idx t) { return MaskRow(mask, d, 0, 0, t).key_begin(); };
  // first t with key_end(t) > s0
  idx a = 0, b = d.T;
  while (a < b) {
    const idx mid = a + (b - a) / 2;
    if (end_of(mid) > s0) b = mid; else a = mid + 1;
  }
  *lo = a;
  // first t with key_begin(t) >= s1
  a = *lo;
  b = d.T;
  while (a < b) {
    const idx mid = a + (b - a) / 2;
    if (begin_of(mid) >= s1) b = mid; else a = mid + 1;
  }
  *hi = a;
}

}  // namespace

template <class T>
void flash_attention_forward(const MhaDims& d, const T* q, const T* k, const T* v,
                             const AttentionMask& mask, const DropoutSpec& drop, T scale, T* ctx,
                             T* lse, int threads) {
  const idx qs = d.N * d.H, vs = d.N * d.Hv;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const T pos_inf = std::numeric_limits<T>::infinity();
  const idx n_qtiles = ceil_div(d.T, kForwardQueryTile);
  const bool dropout = drop.active();

  parallel_for(static_cast<long>(d.B * d.N * n_qtiles), threads, [&](long task) {
    const idx bn = task / n_qtiles, qt = task % n_qtiles;
    const idx b = bn / d.N, n = bn % d.N;
    const idx t0 = qt * kForwardQueryTile, nq = std::min(kForwardQueryTile, d.T - t0);
    ConstHeadMap<T> Q(q + (b * d.T + t0) * qs + n * d.H, nq, d.H, Eigen::OuterStride<>(qs));
    HeadMap<T> C(ctx + (b * d.T + t0) * vs + n * d.Hv, nq, d.Hv, Eigen::OuterStride<>(vs));
    T* row_lse = lse + bn * d.T + t0;

    std::vector<MaskRow> rows;
    rows.reserve(static_cast<size_t>(nq));
    idx lo = d.S, hi = 0;  // keys any row of this tile may see
    for (idx i = 0; i < nq; ++i) {
      rows.emplace_back(mask, d, b, n, t0 + i);
      if (rows[i].query_ok()) {
        lo = std::min(lo, rows[i].key_begin());
        hi = std::max(hi, rows[i].key_end(d.S));
      }
    }

    Buffer<T> logits_buf(static_cast<size_t>(nq * kForwardKeyTile));
    Buffer<T> probs_buf(static_cast<size_t>(nq * kForwardKeyTile));
    RowMat<T> acc = RowMat<T>::Zero(nq, d.Hv);
    std::vector<T> m(static_cast<size_t>(nq), neg_inf);  // running row maximum
    std::vector<T> l(static_cast<size_t>(nq), T(0));     // running row sum

    for (idx s0 = lo; s0 < hi; s0 += kForwardKeyTile) {
      const idx nk = std::min(kForwardKeyTile, hi - s0);
      ConstHeadMap<T> K(k + (b * d.S + s0) * qs + n * d.H, nk, d.H, Eigen::OuterStride<>(qs));
      ConstHeadMap<T> V(v + (b * d.S + s0) * vs + n * d.Hv, nk, d.Hv, Eigen::OuterStride<>(vs));
      TileMap<T> logits(logits_buf.data(), nq, nk);
      TileMap<T> P(probs_buf.data(), nq, nk);
      logits.noalias() = Q * K.transpose();

      for (idx i = 0; i < nq; ++i) {
        const MaskRow& mrow = rows[i];
        T* x = logits_buf.data() + i * nk;
        T* p = probs_buf.data() + i * nk;
        RowArrayMap<T> xr(x, nk), pr(p, nk);
        if (!mrow.query_ok()) {
          pr.setZero();
          continue;
        }
        const bool partial = needs_element_mask(mask, mrow, s0, s0 + nk, d.S);
        xr *= scale;
        if (partial) {
          for (idx j = 0; j < nk; ++j)
            if (!mrow.allowed(s0 + j)) x[j] = neg_inf;
        }
        const T m_new = std::max(m[i], xr.maxCoeff());
        if (m_new == neg_inf) {  // nothing allowed so far
          pr.setZero();
          continue;
        }
        const T alpha = std::exp(m[i] - m_new);  // rescales the old sum; 0 when m was -Inf
        pr = (xr - m_new).exp();
        if (partial) {
          for (idx j = 0; j < nk; ++j)
            if (x[j] == neg_inf) p[j] = T(0);
        }
        l[i] = alpha * l[i] + pr.sum();
        m[i] = m_new;
        if (alpha != T(1)) acc.row(i) *= alpha;
        if (dropout) {
          DropoutRow<T> dr(drop, d, b, n, t0 + i);
          for (idx j = 0; j < nk; ++j) p[j] *= dr.factor(s0 + j);
        }
      }
      acc.noalias() += P * V;
    }

    for (idx i = 0; i < nq; ++i) {
      if (l[i] > T(0)) {
        C.row(i) = acc.row(i) * (T(1) / l[i]);
        row_lse[i] = m[i] + std::log(l[i]);
      } else {  // every key masked: zero probabilities, zero context
        C.row(i).setZero();
        row_lse[i] = pos_inf;
      }
    }
  });
}

template <class T>
void flash_attention_backward(const MhaDims& d, const T* q, const T* k, const T* v,
                              const T* ctx, const T* lse, const AttentionMask& mask,
                              const DropoutSpec& drop, T scale, const T* dctx, T* dq, T* dk,
                              T* dv, int threads) {
  const idx qs = d.N * d.H, vs = d.N * d.Hv, BN = d.B * d.N;
  const T pos_inf = std::numeric_limits<T>::infinity();
  const bool dropout = drop.active();
  if (d.T == 0 || d.S == 0) {
    std::fill(dq, dq + d.B * d.T * qs, T(0));
    std::fill(dk, dk + d.B * d.S * qs, T(0));
    std::fill(dv, dv + d.B * d.S * vs, T(0));
    return;
  }

  // D (B, N, T) = rowsum(dctx * ctx) per head.
  Buffer<T> D(static_cast<size_t>(BN * d.T));
  parallel_for(static_cast<long>(BN), threads, [&](long bn) {
    const idx b = bn / d.N, n = bn % d.N;
    for (idx t = 0; t < d.T; ++t) {
      const T* o = ctx + (b * d.T + t) * vs + n * d.Hv;
      const T* g = dctx + (b * d.T + t) * vs + n * d.Hv;
      T s = T(0);
      for (idx h = 0; h < d.Hv; ++h) s += o[h] * g[h];
      D[bn * d.T + t] = s;
    }
  });

  const idx n_ktiles = ceil_div(d.S, kBackwardKeyTile);
  const idx chunks = std::min(n_ktiles, std::max<idx>(1, ceil_div(kMinBackwardTasks, BN)));
  const idx TH = d.T * d.H;
  Buffer<T> dq_part(static_cast<size_t>(BN * chunks * TH), T(0));  // (B, N, chunks, T, H)

  parallel_for(static_cast<long>(BN * chunks), threads, [&](long task) {
    const idx bn = task / chunks, chunk = task % chunks;
    const idx b = bn / d.N, n = bn % d.N;
    Eigen::Map<RowMat<T>> dQ(dq_part.data() + task * TH, d.T, d.H);
    const T* row_lse = lse + bn * d.T;
    const T* row_D = D.data() + bn * d.T;

    Buffer<T> p_buf(static_cast<size_t>(kBackwardQueryTile * kBackwardKeyTile));
    Buffer<T> dp_buf(static_cast<size_t>(kBackwardQueryTile * kBackwardKeyTile));
    RowMat<T> dK_acc(kBackwardKeyTile, d.H), dV_acc(kBackwardKeyTile, d.Hv);

    // Interleaved key tiles (chunk, chunk + chunks, ...) balance causal work.
    for (idx kt = chunk; kt < n_ktiles; kt += chunks) {
      const idx s0 = kt * kBackwardKeyTile, nk = std::min(kBackwardKeyTile, d.S - s0);
      ConstHeadMap<T> K(k + (b * d.S + s0) * qs + n * d.H, nk, d.H, Eigen::OuterStride<>(qs));
      ConstHeadMap<T> V(v + (b * d.S + s0) * vs + n * d.Hv, nk, d.Hv, Eigen::OuterStride<>(vs));
      HeadMap<T> dK(dk + (b * d.S + s0) * qs + n * d.H, nk, d.H, Eigen::OuterStride<>(qs));
      HeadMap<T> dV(dv + (b * d.S + s0) * vs + n * d.Hv, nk, d.Hv, Eigen::OuterStride<>(vs));
      auto dKa = dK_acc.topRows(nk);
      auto dVa = dV_acc.topRows(nk);
      dKa.setZero();
      dVa.setZero();

      idx tlo, thi;
      query_range_for_keys(mask, d, s0, s0 + nk, &tlo, &thi);
      for (idx t0 = tlo; t0 < thi; t0 += kBackwardQueryTile) {
        const idx nq = std::min(kBackwardQueryTile, thi - t0);
        ConstHeadMap<T> Q(q + (b * d.T + t0) * qs + n * d.H, nq, d.H, Eigen::OuterStride<>(qs));
        ConstHeadMap<T> dO(dctx + (b * d.T + t0) * vs + n * d.Hv, nq, d.Hv,
                           Eigen::OuterStride<>(vs));
        TileMap<T> P(p_buf.data(), nq, nk);
        TileMap<T> dP(dp_buf.data(), nq, nk);
        P.noalias() = Q * K.transpose();
        dP.noalias() = dO * V.transpose();

        bool any_row = false;
        for (idx i = 0; i < nq; ++i) {
          const idx t = t0 + i;
          T* p = p_buf.data() + i * nk;
          T* dp = dp_buf.data() + i * nk;
          RowArrayMap<T> pr(p, nk), dpr(dp, nk);
          const T L = row_lse[t];
          if (L == pos_inf) {  // every key masked: no gradient through this row
            pr.setZero();
            dpr.setZero();
            continue;
          }
          any_row = true;
          MaskRow mrow(mask, d, b, n, t);
          pr = (pr * scale - L).exp();
          if (needs_element_mask(mask, mrow, s0, s0 + nk, d.S)) {
            for (idx j = 0; j < nk; ++j)
              if (!mrow.allowed(s0 + j)) p[j] = T(0);
          }
          const T Dt = row_D[t];
          if (dropout) {
            // dV needs P_drop = P * f; dP (w.r.t. P) = f * (dctx v^T).
            DropoutRow<T> dr(drop, d, b, n, t);
            for (idx j = 0; j < nk; ++j) {
              const T f = dr.factor(s0 + j);
              const T pj = p[j];
              dp[j] = pj * (f * dp[j] - Dt);  // dS
              p[j] = pj * f;                  // P_drop
            }
          } else {
            dpr = pr * (dpr - Dt);  // dS
          }
        }
        if (!any_row) continue;
        dVa.noalias() += P.transpose() * dO;  // P holds P_drop with dropout
        dKa.noalias() += dP.transpose() * Q;
        dQ.middleRows(t0, nq).noalias() += dP * K;
      }
      dK = dKa * scale;
      dV = dVa;
    }
  });

  // dq = scale * sum of the partial dQs, in chunk order.
  parallel_for(static_cast<long>(BN), threads, [&](long bn) {
    const idx b = bn / d.N, n = bn % d.N;
    HeadMap<T> dQ(dq + b * d.T * qs + n * d.H, d.T, d.H, Eigen::OuterStride<>(qs));
    Eigen::Map<const RowMat<T>> first(dq_part.data() + bn * chunks * TH, d.T, d.H);
    dQ = first;
    for (idx c = 1; c < chunks; ++c)
      dQ += Eigen::Map<const RowMat<T>>(dq_part.data() + (bn * chunks + c) * TH, d.T, d.H);
    dQ *= scale;
  });
}

#define MH_INSTANTIATE_FLASH(T)                                                               \
  template void flash_attention_forward<T>(const MhaDims&, const T*, const T*, const T*,      \
                                           const AttentionMask&, const DropoutSpec&, T, T*,   \
                                           T*, int);                                          \
  template void flash_attention_backward<T>(const MhaDims&, const T*, const T*, const T*,     \
                                            const T*, const T*, const AttentionMask&,         \
                                            const DropoutSpec&, T, const T*, T*, T*, T*, int);

MH_INSTANTIATE_FLASH(float)
MH_INSTANTIATE_FLASH(double)

}  // namespace mh
