// Cached (key/value) attention: see mha_cached.h.
#include "mha_cached.h"

#include <cmath>
#include <stdexcept>
#include <vector>

#include "dense.h"
#include "flash_attention.h"
#include "parallel.h"

namespace mh {

namespace {

// Offset of element (b, c, s, n, 0) of the cache and the stride of h.
struct CacheIndex {
  idx B, s_max, Nkv;
  idx at(idx b, idx c, idx s, idx n) const { return b + B * (c + 2 * (s + s_max * n)); }
  idx h_stride() const { return 2 * B * s_max * Nkv; }
};

// Writes rows (B, U, Nkv * H) of projected keys (c = 0) or values (c = 1)
// at positions [s0, s0 + U).
template <class T>
void write_rows(const CacheIndex& ci, idx U, idx H, idx s0, int c, const T* proj, double* data) {
  const idx hs = ci.h_stride();
  for (idx b = 0; b < ci.B; ++b)
    for (idx u = 0; u < U; ++u) {
      const T* row = proj + (b * U + u) * ci.Nkv * H;
      for (idx n = 0; n < ci.Nkv; ++n) {
        double* dst = data + ci.at(b, c, s0 + u, n);
        for (idx h = 0; h < H; ++h) dst[h * hs] = static_cast<double>(row[n * H + h]);
      }
    }
}

}  // namespace

template <class T>
void mha_cached_forward(const MhaDims& d, const T* xq, const T* xk, const T* xv, idx update_rows,
                        idx update_index, const MhaWeights<T>& w, const AttentionMask& mask,
                        const KeyValueCache& cache, int threads, T* out) {
  const idx Nkv = kv_heads(d);
  if (d.B < 0 || d.T < 0 || d.S < 0 || d.S > cache.s_max || d.H != d.Hv || d.H <= 0 ||
      d.N <= 0 || d.N % Nkv != 0 || update_rows < 0 || update_index < 0 ||
      update_index + update_rows > cache.s_max || !cache.data) {
    throw std::invalid_argument("multihead core: invalid cached attention dimensions");
  }
  const CacheIndex ci{d.B, cache.s_max, Nkv};
  const idx BT = d.B * d.T, qw = d.N * d.H, kvw = Nkv * d.H, ctxw = d.N * d.Hv;
  if (update_rows > 0) {
    const idx BU = d.B * update_rows;
    Buffer<T> proj(static_cast<size_t>(checked_count({BU, kvw}, "the projected keys")));
    dense_forward(xk, BU, d.Dk, w.wk, w.bk, kvw, proj.data(), threads);
    write_rows(ci, update_rows, d.H, update_index, 0, proj.data(), cache.data);
    dense_forward(xv, BU, d.Dv, w.wv, w.bv, kvw, proj.data(), threads);
    write_rows(ci, update_rows, d.H, update_index, 1, proj.data(), cache.data);
  }

  FlashOperands<T> ops;
  flash_operands_allocate(d, &ops);
  FlashOperands<T>* opp = &ops;
  dense_forward_blocks<T>(xq, BT, d.E, w.wq, w.bq, qw, threads,
                          [&d, opp](idx r0, idx nr, const T* block) {
                            flash_operands_store(d, 0, r0, nr, nullptr, block, opp);
                          });
  // keys and values of positions [0, d.S), one (batch, head, k or v) per task
  const idx tasks = d.B * Nkv * 2;
  std::vector<char> finite(static_cast<size_t>(tasks), 1);
  parallel_for(tasks, threads_for_elements(double(tasks) * d.S * d.H, threads), [&](long i) {
    const idx b = i / (2 * Nkv), n = (i / 2) % Nkv;
    const int c = static_cast<int>(i % 2);
    finite[i] = flash_operands_store_strided(d, c + 1, b, n, cache.data + ci.at(b, c, 0, n),
                                             2 * d.B, ci.h_stride(), &ops);
  });
  for (const char f : finite)
    if (!f) throw NonFiniteCache();
  Buffer<T> ctx(static_cast<size_t>(BT * ctxw)), lse(static_cast<size_t>(d.B * d.N * d.T));
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d.H)));
  flash_attention_forward(d, ops, mask, DropoutSpec(), scale, ctx.data(), lse.data(), threads);
  ops = FlashOperands<T>();

  const T* h = ctx.data();
  Buffer<T> gate;
  if (w.wg) {  // h = ctx * sigmoid(xq Wg + bg)
    gate.resize(ctx.size());
    dense_forward(xq, BT, d.E, w.wg, w.bg, ctxw, gate.data(), threads);
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = ctx[i] * (T(1) / (T(1) + std::exp(-gate[i])));
    h = gate.data();
  }
  dense_forward(h, BT, ctxw, w.wo, w.bo, d.O, out, threads);
}

template void mha_cached_forward<float>(const MhaDims&, const float*, const float*, const float*,
                                        idx, idx, const MhaWeights<float>&, const AttentionMask&,
                                        const KeyValueCache&, int, float*);
template void mha_cached_forward<double>(const MhaDims&, const double*, const double*,
                                         const double*, idx, idx, const MhaWeights<double>&,
                                         const AttentionMask&, const KeyValueCache&, int, double*);

}  // namespace mh
