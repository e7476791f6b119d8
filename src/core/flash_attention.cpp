// Flash attention: see flash_attention.h.
//
// Forward: one task per (batch, head, query tile). For each key tile the
// task computes the logits tile with one GEMM, updates the running row maximum
// m and row sum l of the online softmax (rescaling what it accumulated so far
// by alpha = exp(m_old - m_new)), and adds P_tile V_tile with a second GEMM.
// At the end ctx = acc / l and lse = m + log(l).
//
// Backward: D = rowsum(dctx * ctx). One task per (batch, key/value head, key
// chunk), a chunk being a fixed set of key tiles; for each key tile, each
// query head of the group (in order) and each query tile that can see it, the task recomputes P = exp(scale * q k^T - lse),
// dP = dctx v^T (times the dropout mask), dS = P * (dP - D), and accumulates
// dV += P_drop^T dctx, dK += dS^T q and its own partial dQ += dS k. The
// partial dQs are summed in chunk order afterwards. The split depends only on
// the shapes, so any thread count gives the same bits.
//
// Key tiles entirely outside the causal / sliding-window band of a query tile
// are skipped (MaskRow::key_begin / key_end), so causal attention costs about
// half; within a tile, keys past the band's end for every row of the query
// tile are not computed either (with T = S = 128 a single key tile holds all
// keys, and this is what makes causal attention cheaper there). With no
// explicit or key mask, each row's softmax works on its visible run of keys
// only (never on exp(-Inf)).
#include "flash_attention.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "attention_mask.h"
#include "cpu_dispatch.h"
#include "dropout_rng.h"
#include "parallel.h"
#include "simd_kernels.h"
#include "tile_gemm.h"

namespace mh {

namespace {

// Tile sizes (rows of q per query tile, rows of k/v per key tile), chosen by
// measurement on AVX2+FMA (see bench/README.md).
// (The MH_FLASH_* macros exist only for tuning builds.)
#ifndef MH_FLASH_FQ
#define MH_FLASH_FQ 64
#define MH_FLASH_BQ 64
#endif
constexpr idx kForwardQueryTile = MH_FLASH_FQ;
constexpr idx kBackwardQueryTile = MH_FLASH_BQ;
// Keys per tile, forward and backward alike (FlashOperands::kt is stored in
// key tiles of this size).
constexpr idx kKeyTile = kFlashKeyTile;
constexpr idx kForwardKeyTile = kKeyTile;
constexpr idx kBackwardKeyTile = kKeyTile;
// The backward pass splits each (batch, head) into key chunks until there
// are at least this many tasks (a function of the shapes only).
constexpr idx kMinBackwardTasks = 4;

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using HeadMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using RowArrayMap = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;

idx ceil_div(idx a, idx b) { return (a + b - 1) / b; }

// Small calls run on one thread: starting a parallel region costs more than
// the work. (Results do not depend on the thread count either way.)
int threads_for(const MhaDims& d, int threads) {
  const double work = static_cast<double>(d.B * d.N) * static_cast<double>(d.T + 1) *
                      static_cast<double>(d.S + 1) * static_cast<double>(d.H + d.Hv);
  return threads_for_macs(work, threads);
}

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

// Sets x[j] = value for every key s0 + j (j < nk) that row `mrow` may not
// attend. With only causal / window masking the disallowed keys are the two
// ends outside the band [key_begin, key_end), filled without testing each key.
template <class T>
void fill_masked(const AttentionMask& mask, const MaskRow& mrow, idx s0, idx nk, idx S, T value,
                 T* x) {
  if (mask.mask || mask.kmask) {
    for (idx j = 0; j < nk; ++j)
      if (!mrow.allowed(s0 + j)) x[j] = value;
    return;
  }
  const idx lo = std::min(nk, std::max<idx>(0, mrow.key_begin() - s0));
  const idx hi = std::max(lo, std::min(nk, mrow.key_end(S) - s0));
  std::fill(x, x + lo, value);
  std::fill(x + hi, x + nk, value);
}

// The keys [*a, *e) (tile offsets, 0 <= *a <= *e <= nk) of the tile of keys
// [s0, s0 + nk) that row `mrow` may see, when only the causal flag and the
// sliding window mask keys (no explicit or key mask): the softmax then works
// on that run alone, and the keys outside it are exact zeros without ever
// passing through exp(-Inf).
inline void band_in_tile(const MaskRow& mrow, idx s0, idx nk, idx S, idx* a, idx* e) {
  *a = std::min(nk, std::max<idx>(0, mrow.key_begin() - s0));
  *e = std::max(*a, std::min(nk, mrow.key_end(S) - s0));
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

// One online-softmax step over a run x[0, n) of raw logits (before the
// scale; masked keys -Inf): the scaled logits y[j] = scale * x[j] are rounded
// and stored in p first, *m_new = max(m_old, max y), then p[j] = exp(y[j] -
// *m_new) and the return value is sum p. The scaled logit is rounded before
// the subtraction (never one fused multiply-add): so the row's largest logit
// gives exactly exp(0) = 1 at any magnitude, as in the materialised kernel,
// instead of exp(the product's rounding error). p[j] for x[j] = -Inf is tiny
// but not zero (the caller zeroes those); when *m_new is -Inf, p holds the
// scaled logits and 0 is returned.
template <class T>
T softmax_run(const T* x, idx n, T scale, T m_old, T* m_new, T* p) {
  if constexpr (std::is_same<T, float>::value) {
    if (use_avx2()) return avx2::softmax_run_f32(x, n, scale, m_old, m_new, p);
  }
  Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>> xr(x, n);
  RowArrayMap<T> pr(p, n);
  pr = xr * scale;
  *m_new = std::max(m_old, n > 0 ? pr.maxCoeff() : m_old);
  if (*m_new == -std::numeric_limits<T>::infinity()) return T(0);
  pr = (pr - *m_new).exp();
  return pr.sum();
}


// p[j] = exp(scale * p[j] - L) for j < n (the backward pass's probabilities
// from the row log-sum-exp L: the arguments are at most about 0). As in
// softmax_run, the scaled logit is rounded before L is subtracted.
template <class T>
void exp_from_lse(T* p, idx n, T scale, T L) {
  if constexpr (std::is_same<T, float>::value) {
    if (use_avx2()) return avx2::exp_from_lse_f32(p, n, scale, L);
  }
  RowArrayMap<T> pr(p, n);
  pr = pr * scale;
  pr = (pr - L).exp();
}

// A per-head view of a (B, L, N, W) tensor: rows of head (b, n) are N*W apart.
template <class T>
struct HeadSource {
  const T* x;
  idx L, W;
  const T* row(const MhaDims& d, idx bn, idx l) const {
    const idx b = bn / d.N, n = bn % d.N;
    return x + ((b * L + l) * d.N + n) * W;
  }
};

// out[c * ldo + r] = in[r * ldi + c] for r < rows, c < cols (8 x 8 AVX
// transposes for float on the AVX2 path).
template <class T>
void transpose_block(const T* in, idx ldi, idx rows, idx cols, T* out, idx ldo) {
  if constexpr (std::is_same<T, float>::value) {
    if (use_avx2()) return avx2::transpose_block_f32(in, ldi, rows, cols, out, ldo);
  }
  for (idx r = 0; r < rows; ++r)
    for (idx c = 0; c < cols; ++c) out[c * ldo + r] = in[r * ldi + c];
}

// Contiguous per-head copy: out (B, N, L, W). The tile products then read
// rows with unit stride and no cache-set aliasing (the row stride N*W of the
// projections is often a power of two).
template <class T>
Buffer<T> heads_contiguous(const MhaDims& d, const HeadSource<T>& src, int threads) {
  Buffer<T> out(static_cast<size_t>(d.B * d.N * src.L * src.W));
  parallel_for(static_cast<long>(d.B * d.N), threads, [&](long bn) {
    T* o = out.data() + bn * src.L * src.W;
    for (idx l = 0; l < src.L; ++l) {
      const T* in = src.row(d, bn, l);
      std::copy(in, in + src.W, o + l * src.W);
    }
  });
  return out;
}

}  // namespace

template <class T>
void flash_operands_allocate(const MhaDims& d, FlashOperands<T>* ops) {
  const idx BN = d.B * d.N, BG = d.B * kv_heads(d);
  ops->q.resize(static_cast<size_t>(BN * d.T * d.H));
  ops->kt.resize(static_cast<size_t>(BG * ceil_div(d.S, kKeyTile) * d.H * kKeyTile));
  ops->v.resize(static_cast<size_t>(BG * d.S * d.Hv));
}

namespace {


// o[w * ld + j] = rows[j][w] for j < m, w < W: m rows of W values stored
// transposed (one key run of one head into its k^T tile).
template <class T>
void store_transposed(const T* const* rows, idx m, idx W, idx ld, T* o) {
  if constexpr (std::is_same<T, float>::value) {
    if (use_avx2()) return avx2::store_transposed_f32(rows, m, W, ld, o);
  }
  for (idx w = 0; w < W; ++w)
    for (idx j = 0; j < m; ++j) o[w * ld + j] = rows[j][w];
}

}  // namespace

template <class T>
void flash_operands_store(const MhaDims& d, int which, idx r0, idx nr, const idx* row_map,
                          const T* block, FlashOperands<T>* ops) {
  const idx L = which == 0 ? d.T : d.S, W = which == 2 ? d.Hv : d.H;
  const idx heads = which == 0 ? d.N : kv_heads(d), NW = heads * W;
  if (which != 1) {  // q and v rows are contiguous runs wherever they go
    for (idx i = 0; i < nr; ++i) {
      const idx r = row_map ? row_map[r0 + i] : r0 + i, b = r / L, l = r % L;
      const T* row = block + i * NW;
      T* o = (which == 0 ? ops->q.data() : ops->v.data()) + (b * heads * L + l) * W;
      for (idx n = 0; n < heads; ++n) std::copy(row + n * W, row + (n + 1) * W, o + n * L * W);
    }
    return;
  }
  // k^T by key tiles: the rows in increasing destination order, cut into runs
  // of consecutive keys of one batch and one key tile; each run of each head
  // is one transposed (W, run) block of its tile.
  const idx n_tiles = ceil_div(d.S, kKeyTile);
  std::vector<std::pair<idx, idx>> dest(static_cast<size_t>(nr));  // (destination row, i)
  for (idx i = 0; i < nr; ++i) dest[i] = {row_map ? row_map[r0 + i] : r0 + i, i};
  if (!std::is_sorted(dest.begin(), dest.end())) std::sort(dest.begin(), dest.end());
  std::vector<const T*> rows(static_cast<size_t>(kKeyTile));
  for (idx k = 0; k < nr;) {
    const idx b = dest[k].first / L, l0 = dest[k].first % L;
    const idx tile_end = std::min(L, (l0 / kKeyTile + 1) * kKeyTile);
    idx m = 1;
    while (k + m < nr && dest[k + m].first == dest[k].first + m && l0 + m < tile_end) ++m;
    for (idx n = 0; n < heads; ++n) {
      for (idx j = 0; j < m; ++j) rows[j] = block + dest[k + j].second * NW + n * W;
      T* o = ops->kt.data() + ((b * heads + n) * n_tiles + l0 / kKeyTile) * W * kKeyTile +
             l0 % kKeyTile;
      store_transposed(rows.data(), m, W, kKeyTile, o);
    }
    k += m;
  }
}

template <class T>
bool flash_operands_store_strided(const MhaDims& d, int which, idx b, idx n, const double* src,
                                  idx s_stride, idx w_stride, FlashOperands<T>* ops) {
  const idx W = which == 2 ? d.Hv : d.H, heads = kv_heads(d), S = d.S;
  T acc = T(0);  // y - y is 0 exactly for finite y
  if (which == 1) {  // k^T: (W, tile) blocks, positions contiguous within a tile
    const idx n_tiles = ceil_div(S, kKeyTile);
    T* head = ops->kt.data() + (b * heads + n) * n_tiles * W * kKeyTile;
    for (idx w = 0; w < W; ++w) {
      const double* col = src + w * w_stride;
      for (idx s = 0; s < S; ++s) {
        const T y = static_cast<T>(col[s * s_stride]);
        acc += y - y;
        head[((s / kKeyTile) * W + w) * kKeyTile + s % kKeyTile] = y;
      }
    }
  } else {  // v: (S, W) rows
    T* head = ops->v.data() + (b * heads + n) * S * W;
    for (idx w = 0; w < W; ++w) {
      const double* col = src + w * w_stride;
      for (idx s = 0; s < S; ++s) {
        const T y = static_cast<T>(col[s * s_stride]);
        acc += y - y;
        head[s * W + w] = y;
      }
    }
  }
  return acc == T(0);
}

bool flash_operands_direct(const MhaDims& d, int which) {
  const idx W = which == 2 ? d.Hv : d.H;
  return which != 1 && W % 16 == 0;
}

template <class T>
void flash_operands_rows(const MhaDims& d, int which, idx r0, idx nr, const idx* row_map,
                         FlashOperands<T>* ops, T** rows) {
  const idx L = which == 0 ? d.T : d.S, W = which == 2 ? d.Hv : d.H;
  const idx heads = which == 0 ? d.N : kv_heads(d);
  T* base = which == 0 ? ops->q.data() : ops->v.data();
  for (idx i = 0; i < nr; ++i) {
    const idx r = row_map ? row_map[r0 + i] : r0 + i, b = r / L, l = r % L;
    rows[i] = base + (b * heads * L + l) * W;
  }
}

std::vector<idx> flash_operands_strips(const MhaDims& d, int which) {
  const idx L = which == 0 ? d.T : d.S, W = which == 2 ? d.Hv : d.H;
  const idx heads = which == 0 ? d.N : kv_heads(d);
  std::vector<idx> strips(static_cast<size_t>(ceil_div(heads * W, 16)));
  for (size_t s = 0; s < strips.size(); ++s) {
    const idx j0 = static_cast<idx>(s) * 16;
    strips[s] = (j0 / W) * L * W + j0 % W;  // head j0 / W, its column j0 % W
  }
  return strips;
}

template <class T>
void flash_attention_forward(const MhaDims& d, const FlashOperands<T>& ops,
                             const AttentionMask& mask, const DropoutSpec& drop, T scale, T* ctx,
                             T* lse, int threads, const std::function<void()>& alongside) {
  threads = threads_for(d, threads);
  const idx vs = d.N * d.Hv;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const T pos_inf = std::numeric_limits<T>::infinity();
  const idx n_qtiles = ceil_div(d.T, kForwardQueryTile);
  const bool dropout = drop.active();
  const idx TK = kForwardKeyTile, n_ktiles = ceil_div(d.S, TK);
  const Buffer<T>& qh = ops.q;
  const Buffer<T>& kt = ops.kt;
  const Buffer<T>& vh = ops.v;

  auto side = [&] {
    if (alongside) alongside();
  };
  const long n_tasks = static_cast<long>(d.B * d.N * n_qtiles);
  std::vector<char> overflow(static_cast<size_t>(n_tasks), 0);  // one flag per task
  parallel_for_alongside(n_tasks, threads, side, [&](long task) {
    const idx bn = task / n_qtiles, qt = task % n_qtiles;
    const idx b = bn / d.N, n = bn % d.N, bg = b * kv_heads(d) + kv_head_of(d, n);
    const idx t0 = qt * kForwardQueryTile, nq = std::min(kForwardQueryTile, d.T - t0);
    const T* Q = qh.data() + (bn * d.T + t0) * d.H;
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

    const bool band_only = !mask.mask && !mask.kmask;
    for (idx s0 = lo / TK * TK; s0 < hi; s0 += TK) {
      // Keys past `hi` are masked for every row of the tile: not computed.
      const idx nk = std::min(TK, std::min(d.S, hi) - s0);
      const T* Kt = kt.data() + (bg * n_ktiles + s0 / TK) * d.H * TK;
      const T* V = vh.data() + (bg * d.S + s0) * d.Hv;
      // logits (nq, nk) = Q (nq, H) k^T (H, nk)
      tile_gemm(nq, nk, d.H, Q, d.H, 1, Kt, TK, logits_buf.data(), nk, false);

      for (idx i = 0; i < nq; ++i) {
        const MaskRow& mrow = rows[i];
        T* x = logits_buf.data() + i * nk;
        T* p = probs_buf.data() + i * nk;
        RowArrayMap<T> pr(p, nk);
        if (!mrow.query_ok()) {
          pr.setZero();
          continue;
        }
        T m_new, alpha;
        if (band_only) {
          idx a, e;
          band_in_tile(mrow, s0, nk, d.S, &a, &e);
          std::fill(p, p + a, T(0));
          std::fill(p + e, p + nk, T(0));
          if (a == e) continue;  // no key of this tile: m, l and acc unchanged
          const T sum = softmax_run(x + a, e - a, scale, m[i], &m_new, p + a);
          alpha = std::exp(m[i] - m_new);  // rescales the old sum; 0 when m was -Inf
          l[i] = alpha * l[i] + sum;
        } else {
          const bool partial = needs_element_mask(mask, mrow, s0, s0 + nk, d.S);
          if (partial) fill_masked(mask, mrow, s0, nk, d.S, neg_inf, x);
          const T sum = softmax_run(x, nk, scale, m[i], &m_new, p);
          if (m_new == neg_inf) {  // nothing allowed so far
            // an allowed key at -Inf is a logit below float's range
            for (idx j = 0; j < nk; ++j)
              if (x[j] == neg_inf && mrow.allowed(s0 + j)) overflow[static_cast<size_t>(task)] = 1;
            pr.setZero();
            continue;
          }
          alpha = std::exp(m[i] - m_new);
          if (partial) {  // exactly zero (exp(-Inf) above is a tiny positive number)
            for (idx j = 0; j < nk; ++j)
              if (x[j] == neg_inf) p[j] = T(0);
          }
          // the tiny values just zeroed were counted in `sum`: recount
          l[i] = alpha * l[i] + (partial ? pr.sum() : sum);
        }
        m[i] = m_new;
        if (alpha != T(1)) acc.row(i) *= alpha;
        if (dropout) {
          DropoutRow<T> dr(drop, d, b, n, t0 + i);
          for (idx j = 0; j < nk; ++j) p[j] *= dr.factor(s0 + j);
        }
      }
      // acc (nq, Hv) += P (nq, nk) V (nk, Hv)
      tile_gemm(nq, d.Hv, nk, probs_buf.data(), nk, 1, V, d.Hv, acc.data(), d.Hv, true);
    }

    for (idx i = 0; i < nq; ++i) {
      if (l[i] > T(0) && m[i] < pos_inf) {
        C.row(i) = acc.row(i) * (T(1) / l[i]);
        row_lse[i] = m[i] + std::log(l[i]);
      } else if (l[i] == T(0)) {  // every key masked: zero probabilities, zero context
        C.row(i).setZero();
        row_lse[i] = pos_inf;
      } else {  // a logit beyond float's range made the sum NaN
        overflow[static_cast<size_t>(task)] = 1;
      }
    }
  });
  if (std::find(overflow.begin(), overflow.end(), 1) != overflow.end()) throw LogitOverflow();
}

template <class T>
void flash_attention_backward(const MhaDims& d, FlashOperands<T>& ops, Buffer<T>& ctx_buf,
                              const T* lse, const AttentionMask& mask, const DropoutSpec& drop,
                              T scale, Buffer<T>& dctx_buf, T* dq, T* dk, T* dv, int threads) {
  threads = threads_for(d, threads);
  const T* ctx = ctx_buf.data();
  const T* dctx = dctx_buf.data();
  const idx G = kv_heads(d), R = d.N / G;
  const idx qs = d.N * d.H, cs = d.N * d.Hv, ks = G * d.H, vs = G * d.Hv;
  const idx BN = d.B * d.N, BG = d.B * G;
  const T pos_inf = std::numeric_limits<T>::infinity();
  const bool dropout = drop.active();
  if (d.T == 0 || d.S == 0) {
    std::fill(dq, dq + d.B * d.T * qs, T(0));
    std::fill(dk, dk + d.B * d.S * ks, T(0));
    std::fill(dv, dv + d.B * d.S * vs, T(0));
    return;
  }

  // D (B, N, T) = rowsum(dctx * ctx) per head: rows (b, t) of ctx and dctx
  // read whole and in order, in fixed blocks of rows, each head's sum one
  // vectorised dot product.
  Buffer<T> D(static_cast<size_t>(BN * d.T));
  constexpr idx kRowsPerTask = 256;
  const idx BT = d.B * d.T;
  parallel_for(static_cast<long>(ceil_div(BT, kRowsPerTask)),
               threads_for_elements(static_cast<double>(BT * cs), threads), [&](long blk) {
    for (idx r = blk * kRowsPerTask; r < std::min(BT, (blk + 1) * kRowsPerTask); ++r) {
      const idx b = r / d.T, t = r % d.T;
      for (idx n = 0; n < d.N; ++n) {
        Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>> o(ctx + r * cs + n * d.Hv, d.Hv),
            g(dctx + r * cs + n * d.Hv, d.Hv);
        D[(b * d.N + n) * d.T + t] = o.dot(g);
      }
    }
  });

  Buffer<T>().swap(ctx_buf);  // D holds all that is needed of it
  const idx TK = kBackwardKeyTile, n_ktiles = ceil_div(d.S, TK);
  const Buffer<T>& qh = ops.q;   // (B, N, T, H)
  const Buffer<T>& kt = ops.kt;  // k^T tiles, (B, Nkv, ...)
  const Buffer<T>& vh = ops.v;   // (B, Nkv, S, Hv)
  const Buffer<T> doh = heads_contiguous(d, HeadSource<T>{dctx, d.T, d.Hv}, threads);
  Buffer<T>().swap(dctx_buf);
  // Tasks: (batch, key/value head, key chunk). A task runs its group's query
  // heads in order for each of its key tiles, so dK and dV of a key tile sum
  // the group's terms in a fixed order.
  const idx chunks =
      std::min(n_ktiles, std::max<idx>(1, ceil_div(kMinBackwardTasks, std::max<idx>(1, BG))));  // BG may be 0
  const idx TH = d.T * d.H;
  // Each query head's first chunk accumulates in its rows of dq; with more
  // chunks (few heads), each further chunk c has a partial dQ in
  // dq_part[c - 1] (B, N, T, H) (the size of q, so the buffer cache can hand
  // it the mapping of a buffer released above), and those are added in chunk
  // order afterwards.
  const bool direct_dq = chunks == 1;
  std::vector<Buffer<T>> dq_part(static_cast<size_t>(chunks - 1));
  for (Buffer<T>& part : dq_part) part.resize(static_cast<size_t>(BN * TH));

  const bool band_only = !mask.mask && !mask.kmask;
  parallel_for(static_cast<long>(BG * chunks), threads, [&](long task) {
    const idx bg = task / chunks, chunk = task % chunks;
    const idx b = bg / G, g = bg % G;
    // dQ of query head n: (T, H) with row stride ldq
    auto dQ_of = [&](idx n) {
      return chunk == 0 ? dq + b * d.T * qs + n * d.H
                        : dq_part[static_cast<size_t>(chunk - 1)].data() + (b * d.N + n) * TH;
    };
    const idx ldq = chunk == 0 ? qs : d.H;
    for (idx n = g * R; n < (g + 1) * R; ++n) {
      T* dQ = dQ_of(n);
      for (idx t = 0; t < d.T; ++t) std::fill(dQ + t * ldq, dQ + t * ldq + d.H, T(0));
    }

    Buffer<T> p_buf(static_cast<size_t>(kBackwardQueryTile * kBackwardKeyTile));
    Buffer<T> dp_buf(static_cast<size_t>(kBackwardQueryTile * kBackwardKeyTile));
    Buffer<T> dk_acc(static_cast<size_t>(kBackwardKeyTile * d.H));
    Buffer<T> dv_acc(static_cast<size_t>(kBackwardKeyTile * d.Hv));
    // This key tile's k rows (nk, H) and v^T (Hv, TK), transposed here from
    // the k^T tiles and v's rows: each key tile belongs to one task, so no
    // whole-size copies of k or v^T are needed (columns past nk never read).
    Buffer<T> k_tile(static_cast<size_t>(kBackwardKeyTile * d.H));
    Buffer<T> vt_tile(static_cast<size_t>(d.Hv * kBackwardKeyTile));

    // Interleaved key tiles (chunk, chunk + chunks, ...) balance causal work.
    for (idx kt_idx = chunk; kt_idx < n_ktiles; kt_idx += chunks) {
      const idx s0 = kt_idx * TK, nk = std::min(TK, d.S - s0);
      const T* Kt = kt.data() + (bg * n_ktiles + kt_idx) * d.H * TK;
      transpose_block(Kt, TK, d.H, nk, k_tile.data(), d.H);
      transpose_block(vh.data() + (bg * d.S + s0) * d.Hv, d.Hv, nk, d.Hv, vt_tile.data(), TK);
      const T* K = k_tile.data();
      const T* Vt = vt_tile.data();
      HeadMap<T> dK(dk + (b * d.S + s0) * ks + g * d.H, nk, d.H, Eigen::OuterStride<>(ks));
      HeadMap<T> dV(dv + (b * d.S + s0) * vs + g * d.Hv, nk, d.Hv, Eigen::OuterStride<>(vs));
      Eigen::Map<RowMat<T>> dKa(dk_acc.data(), nk, d.H), dVa(dv_acc.data(), nk, d.Hv);
      dKa.setZero();
      dVa.setZero();

      idx tlo, thi;
      query_range_for_keys(mask, d, s0, s0 + nk, &tlo, &thi);
      for (idx n = g * R; n < (g + 1) * R; ++n) {
        const idx bn = b * d.N + n;
        T* dQ = dQ_of(n);
        const T* row_lse = lse + bn * d.T;
        const T* row_D = D.data() + bn * d.T;
        for (idx t0 = tlo; t0 < thi; t0 += kBackwardQueryTile) {
          const idx nq = std::min(kBackwardQueryTile, thi - t0);
          // Keys [s0 + mk, s0 + nk) are masked for every row of this query
          // tile (the band's end never decreases with t): not computed.
          const idx mk = std::min(nk, MaskRow(mask, d, b, n, t0 + nq - 1).key_end(d.S) - s0);
          if (mk <= 0) continue;
          const T* Q = qh.data() + (bn * d.T + t0) * d.H;
          const T* dO = doh.data() + (bn * d.T + t0) * d.Hv;
          // P (nq, mk) = Q k^T, dP (nq, mk) = dO v^T (before the softmax below)
          tile_gemm(nq, mk, d.H, Q, d.H, 1, Kt, TK, p_buf.data(), mk, false);
          tile_gemm(nq, mk, d.Hv, dO, d.Hv, 1, Vt, TK, dp_buf.data(), mk, false);

          bool any_row = false;
          for (idx i = 0; i < nq; ++i) {
            const idx t = t0 + i;
            T* p = p_buf.data() + i * mk;
            T* dp = dp_buf.data() + i * mk;
            RowArrayMap<T> pr(p, mk), dpr(dp, mk);
            const T L = row_lse[t];
            if (L == pos_inf) {  // every key masked: no gradient through this row
              pr.setZero();
              dpr.setZero();
              continue;
            }
            any_row = true;
            MaskRow mrow(mask, d, b, n, t);
            if (band_only) {  // exp over the visible run only, exact zeros elsewhere
              idx a, e;
              band_in_tile(mrow, s0, mk, d.S, &a, &e);
              std::fill(p, p + a, T(0));
              std::fill(p + e, p + mk, T(0));
              exp_from_lse(p + a, e - a, scale, L);
            } else {
              exp_from_lse(p, mk, scale, L);
              if (needs_element_mask(mask, mrow, s0, s0 + mk, d.S)) {
                fill_masked(mask, mrow, s0, mk, d.S, T(0), p);
              }
            }
            const T Dt = row_D[t];
            if (dropout) {
              // dV needs P_drop = P * f; dP (w.r.t. P) = f * (dctx v^T).
              DropoutRow<T> dr(drop, d, b, n, t);
              for (idx j = 0; j < mk; ++j) {
                const T f = dr.factor(s0 + j);
                const T pj = p[j];
                dp[j] = pj * (f * dp[j] - Dt);  // dS
                p[j] = pj * f;                  // P_drop
              }
            } else if (std::is_same<T, float>::value && use_avx2()) {
              avx2::softmax_grad_f32(reinterpret_cast<const float*>(p),
                                     reinterpret_cast<float*>(dp), mk, static_cast<float>(Dt));
            } else {
              dpr = pr * (dpr - Dt);  // dS
            }
          }
          if (!any_row) continue;
          const T* P = p_buf.data();   // P_drop with dropout
          const T* dS = dp_buf.data();
          tile_gemm(mk, d.Hv, nq, P, 1, mk, dO, d.Hv, dv_acc.data(), d.Hv, true);  // dV += P^T dO
          tile_gemm(mk, d.H, nq, dS, 1, mk, Q, d.H, dk_acc.data(), d.H, true);    // dK += dS^T Q
          tile_gemm(nq, d.H, mk, dS, mk, 1, K, d.H, dQ + t0 * ldq, ldq, true);     // dQ += dS K
        }
      }
      dK = dKa * scale;
      dV = dVa;
    }
    if (direct_dq)
      for (idx n = g * R; n < (g + 1) * R; ++n) {
        T* dQ = dQ_of(n);
        for (idx t = 0; t < d.T; ++t)
          for (idx h = 0; h < d.H; ++h) dQ[t * ldq + h] *= scale;
      }
  });
  if (direct_dq) return;

  // dq = scale * the sum of the chunks' dQs, in chunk order.
  parallel_for(static_cast<long>(BN), threads, [&](long bn) {
    const idx b = bn / d.N, n = bn % d.N;
    HeadMap<T> dQ(dq + b * d.T * qs + n * d.H, d.T, d.H, Eigen::OuterStride<>(qs));
    for (idx c = 1; c < chunks; ++c)
      dQ += Eigen::Map<const RowMat<T>>(dq_part[static_cast<size_t>(c - 1)].data() + bn * TH, d.T, d.H);
    dQ *= scale;
  });
}

#define MH_INSTANTIATE_FLASH(T)                                                               \
  template void flash_operands_allocate<T>(const MhaDims&, FlashOperands<T>*);                \
  template void flash_operands_store<T>(const MhaDims&, int, idx, idx, const idx*, const T*,  \
                                        FlashOperands<T>*);                                    \
  template bool flash_operands_store_strided<T>(const MhaDims&, int, idx, idx, const double*,  \
                                                idx, idx, FlashOperands<T>*);                   \
  template void flash_operands_rows<T>(const MhaDims&, int, idx, idx, const idx*,             \
                                       FlashOperands<T>*, T**);                               \
  template void flash_attention_forward<T>(const MhaDims&, const FlashOperands<T>&,           \
                                           const AttentionMask&, const DropoutSpec&, T, T*,   \
                                           T*, int, const std::function<void()>&);            \
  template void flash_attention_backward<T>(const MhaDims&, FlashOperands<T>&, Buffer<T>&,    \
                                            const T*, const AttentionMask&,                   \
                                            const DropoutSpec&, T, Buffer<T>&, T*, T*, T*, int);

MH_INSTANTIATE_FLASH(float)
MH_INSTANTIATE_FLASH(double)

}  // namespace mh
