// Multi-head attention layer: see mha.h.
#include "mha.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "attention.h"
#include "dense.h"
#include "dense_colmajor.h"
#include "flash_attention.h"
#include "large_buffers.h"

namespace mh {

namespace {

template <class T>
T inverse_sqrt_key_dim(idx H) {
  return static_cast<T>(1.0 / std::sqrt(static_cast<double>(H)));
}

void check_dims(const MhaDims& d) {
  if (d.B < 0 || d.T < 0 || d.S < 0 || d.E <= 0 || d.Dk <= 0 || d.Dv <= 0 || d.N <= 0 ||
      d.H <= 0 || d.Hv <= 0 || d.O <= 0 || d.Nkv < 0 || d.N % kv_heads(d) != 0) {
    throw std::invalid_argument("multihead core: invalid dimensions");
  }
  // every buffer of the forward and backward passes (the (B, N, T, S)
  // probabilities are checked where they are materialised)
  checked_count({d.B, d.T, d.N, std::max(d.H, d.Hv)}, "a projected query (B, T, N, H)");
  checked_count({d.B, d.S, kv_heads(d), std::max(d.H, d.Hv)}, "a projected key or value (B, S, N, H)");
  checked_count({d.B, d.T, std::max(d.E, d.O)}, "the query or output (B, T, E or O)");
  checked_count({d.B, d.S, std::max(d.Dk, d.Dv)}, "the key or value (B, S, D)");
  checked_count({d.B, d.N, d.T}, "the row statistics (B, N, T)");
}

// Columns of the projections: q and the gate (N heads), k and v (Nkv heads).
struct ProjectionWidths {
  idx q, k, v, ctx;
  explicit ProjectionWidths(const MhaDims& d)
      : q(d.N * d.H), k(kv_heads(d) * d.H), v(kv_heads(d) * d.Hv), ctx(d.N * d.Hv) {}
};

// ---- the gate: gate = sigmoid(xq Wg + bg), h = ctx * gate ----------------------

template <class T>
void sigmoid_inplace(Buffer<T>& x) {
  for (T& z : x) z = T(1) / (T(1) + std::exp(-z));
}

// h = ctx * gate, elementwise.
template <class T>
Buffer<T> gated(const Buffer<T>& ctx, const Buffer<T>& gate) {
  Buffer<T> h(ctx.size());
  for (size_t i = 0; i < h.size(); ++i) h[i] = ctx[i] * gate[i];
  return h;
}

// From dh = dL/dh: dctx = dh * gate and dz = dL/d(xq Wg + bg) through the
// sigmoid.
template <class T>
void gate_backward(const Buffer<T>& dh, const Buffer<T>& ctx, const Buffer<T>& gate,
                   Buffer<T>* dctx, Buffer<T>* dz) {
  dctx->resize(ctx.size());
  dz->resize(ctx.size());
  for (size_t i = 0; i < ctx.size(); ++i) {
    const T gi = gate[i];
    (*dctx)[i] = dh[i] * gi;
    (*dz)[i] = dh[i] * ctx[i] * gi * (T(1) - gi);
  }
}

}  // namespace

template <class T>
void mha_forward(const MhaDims& d, const T* xq, const T* xk, const T* xv,
                 const MhaWeights<T>& w, const AttentionMask& mask, const DropoutSpec& drop,
                 bool flash, int threads, T* out, T* scores, MhaCache<T>* cache) {
  check_dims(d);
  const idx BT = d.B * d.T, BS = d.B * d.S;
  const ProjectionWidths pw(d);
  MhaCache<T> local;
  MhaCache<T>& c = cache ? *cache : local;
  c.ctx.resize(static_cast<size_t>(BT * pw.ctx));
  c.flash = flash && !scores;
  c.path = c.flash ? MhaPath::kFlashConverted : MhaPath::kMaterialised;
  if (c.flash) {
    // The projections go straight into the flash kernel's layouts.
    Buffer<T>().swap(c.probs);
    Buffer<T>().swap(c.q);
    Buffer<T>().swap(c.k);
    Buffer<T>().swap(c.v);
    flash_operands_allocate(d, &c.ops);
    FlashOperands<T>* ops = &c.ops;
    auto store = [&](int which) {
      return [&d, ops, which](idx r0, idx nr, const T* block) {
        flash_operands_store(d, which, r0, nr, nullptr, block, ops);
      };
    };
    dense_forward_blocks<T>(xq, BT, d.E, w.wq, w.bq, pw.q, threads, store(0));
    dense_forward_blocks<T>(xk, BS, d.Dk, w.wk, w.bk, pw.k, threads, store(1));
    dense_forward_blocks<T>(xv, BS, d.Dv, w.wv, w.bv, pw.v, threads, store(2));
    c.lse.resize(static_cast<size_t>(d.B * d.N * d.T));
    flash_attention_forward(d, c.ops, mask, drop, inverse_sqrt_key_dim<T>(d.H), c.ctx.data(),
                            c.lse.data(), threads);
  } else {
    c.ops = FlashOperands<T>();
    c.q.resize(static_cast<size_t>(BT * pw.q));
    c.k.resize(static_cast<size_t>(BS * pw.k));
    c.v.resize(static_cast<size_t>(BS * pw.v));
    dense_forward(xq, BT, d.E, w.wq, w.bq, pw.q, c.q.data(), threads);
    dense_forward(xk, BS, d.Dk, w.wk, w.bk, pw.k, c.k.data(), threads);
    dense_forward(xv, BS, d.Dv, w.wv, w.bv, pw.v, c.v.data(), threads);
    Buffer<T>().swap(c.lse);
    T* probs = scores;
    if (cache) {
      c.probs.resize(static_cast<size_t>(checked_count({d.B, d.N, d.T, d.S}, "the probabilities (B, N, T, S)")));
      probs = c.probs.data();
    }
    attention_forward(d, c.q.data(), c.k.data(), c.v.data(), mask, drop,
                      inverse_sqrt_key_dim<T>(d.H), c.ctx.data(), probs, threads);
    if (cache && scores && scores != probs) {
      std::copy(c.probs.begin(), c.probs.end(), scores);
    }
  }

  const T* h = c.ctx.data();
  Buffer<T> hg;
  if (w.wg) {
    c.gate.resize(static_cast<size_t>(BT * pw.ctx));
    dense_forward(xq, BT, d.E, w.wg, w.bg, pw.ctx, c.gate.data(), threads);
    sigmoid_inplace(c.gate);
    hg = gated(c.ctx, c.gate);
    h = hg.data();
  }
  dense_forward(h, BT, pw.ctx, w.wo, w.bo, d.O, out, threads);
}

namespace {

// The forward pass of the flash in-place path into `c` (ctx, lse, gate and,
// if `keep_operands`, the flash operands), writing io.out.
template <class T>
void forward_colmajor(const MhaDims& d, const MhaColumnMajorIO& io, const MhaWeights<T>& w,
                      const AttentionMask& mask, const DropoutSpec& drop, int threads,
                      bool keep_operands, MhaCache<T>& c) {
  check_dims(d);
  if (!io.xq || !io.xk || !io.xv || !io.q_row || !io.kv_row || !io.out) {
    throw std::invalid_argument("multihead core: mha_forward_colmajor needs every input, row map and the output");
  }
  const idx BT = d.B * d.T, BS = d.B * d.S;
  const ProjectionWidths pw(d);
  c.flash = true;
  c.path = MhaPath::kFlashInPlace;
  c.ctx.resize(static_cast<size_t>(BT * pw.ctx));
  {
    flash_operands_allocate(d, &c.ops);
    FlashOperands<T>* o = &c.ops;
    auto store = [&d, o](int which, const idx* row_map) {
      return [&d, o, which, row_map](idx r0, idx nr, const T* block) {
        flash_operands_store(d, which, r0, nr, row_map, block, o);
      };
    };
    bool finite[3] = {true, true, true};  // query, key, value
    auto check = [&](int k) { return io.check_finite ? &finite[k] : nullptr; };
    std::vector<ColMajorProduct<T>> products = {
        ColMajorProduct<T>{io.xq, BT, BT, d.E, w.wq, w.bq, pw.q, store(0, io.q_row), check(0)},
        ColMajorProduct<T>{io.xk, BS, BS, d.Dk, w.wk, w.bk, pw.k, store(1, io.kv_row), check(1)},
        ColMajorProduct<T>{io.xv, BS, BS, d.Dv, w.wv, w.bv, pw.v, store(2, io.kv_row), check(2)}};
    // q and v rows written by the projection kernel in place where it can
    // (k goes through `store`: it is kept transposed)
    std::vector<idx> strips[3];
    for (int which : {0, 2}) {
      if (!flash_operands_direct(d, which)) continue;
      const idx* row_map = which == 0 ? io.q_row : io.kv_row;
      strips[which] = flash_operands_strips(d, which);
      products[which].direct_rows = [&d, o, which, row_map](idx r0, idx nr, T** rows) {
        flash_operands_rows(d, which, r0, nr, row_map, o, rows);
      };
      products[which].direct_strip = strips[which].data();
    }
    dense_forward_blocks_colmajor<T>(products, threads);
    if (!finite[0]) throw NonFiniteInput(NonFiniteInput::kQuery);
    if (!finite[2]) throw NonFiniteInput(NonFiniteInput::kValue);
    if (!finite[1]) throw NonFiniteInput(NonFiniteInput::kKey);
    c.lse.resize(static_cast<size_t>(d.B * d.N * d.T));
    // io.out is the caller's fresh array: one thread maps it in while the
    // other starts on the attention tiles, so the output projection's
    // threads do not fault the same pages at once.
    flash_attention_forward(d, c.ops, mask, drop, inverse_sqrt_key_dim<T>(d.H), c.ctx.data(),
                            c.lse.data(), threads, [&] {
                              populate_pages(io.out, static_cast<size_t>(BT * d.O) * sizeof(double));
                            });
    if (!keep_operands) c.ops = FlashOperands<T>();
  }
  const T* h = c.ctx.data();
  Buffer<T> hg;
  if (w.wg) {
    c.gate.resize(c.ctx.size());
    T* gp = c.gate.data();
    const idx NHv = pw.ctx;
    dense_forward_blocks_colmajor<T>(io.xq, BT, BT, d.E, w.wg, w.bg, NHv, threads,
                                     [&](idx r0, idx nr, const T* block) {
                                       for (idx i = 0; i < nr; ++i)
                                         std::copy(block + i * NHv, block + (i + 1) * NHv,
                                                   gp + io.q_row[r0 + i] * NHv);
                                     });
    sigmoid_inplace(c.gate);
    if (keep_operands) {  // the backward pass needs ctx before the gate
      hg = gated(c.ctx, c.gate);
      h = hg.data();
    } else {
      for (size_t i = 0; i < c.ctx.size(); ++i) c.ctx[i] *= c.gate[i];
    }
  }
  dense_forward_gather_colmajor<T>(h, io.q_row, BT, pw.ctx, w.wo, w.bo, d.O, io.out, BT,
                                   io.out_col, threads);
}

}  // namespace

template <class T>
void mha_forward_colmajor(const MhaDims& d, const MhaColumnMajorIO& io, const MhaWeights<T>& w,
                          const AttentionMask& mask, const DropoutSpec& drop, int threads) {
  MhaCache<T> c;
  forward_colmajor(d, io, w, mask, drop, threads, false, c);
}

template <class T>
void mha_backward_colmajor(const MhaDims& d, const MhaColumnMajorIO& io, const MhaWeights<T>& w,
                           const AttentionMask& mask, const DropoutSpec& drop, MhaCache<T>& c,
                           const MhaColumnMajorGrads& cg, const MhaGrads<T>& g, int threads) {
  check_dims(d);
  if (!cg.dout) throw std::invalid_argument("multihead core: mha_backward_colmajor needs dout");
  const idx BT = d.B * d.T, BS = d.B * d.S;
  const ProjectionWidths pw(d);
  if (c.path != MhaPath::kFlashInPlace || c.ops.q.empty() ||
      c.lse.size() != static_cast<size_t>(d.B * d.N * d.T) ||
      c.ctx.size() != static_cast<size_t>(BT * pw.ctx)) {
    throw std::invalid_argument("multihead core: backward needs the forward cache");
  }

  // Output projection: out = h Wo + bo, dout read from the caller's layout.
  Buffer<T> dh(static_cast<size_t>(BT * pw.ctx));
  Buffer<T> dctx, dz;
  bool dout_finite = true;
  bool* check_dout = io.check_finite ? &dout_finite : nullptr;
  if (w.wg) {
    const Buffer<T> h = gated(c.ctx, c.gate);
    dense_backward_colmajor_dy<T>(cg.dout, BT, io.out_col, io.q_row, BT, h.data(), pw.ctx, w.wo,
                                  d.O, dh.data(), g.dwo, g.dbo, threads, check_dout);
    gate_backward(dh, c.ctx, c.gate, &dctx, &dz);
    Buffer<T>().swap(dh);
  } else {
    dense_backward_colmajor_dy<T>(cg.dout, BT, io.out_col, io.q_row, BT, c.ctx.data(), pw.ctx,
                                  w.wo, d.O, dh.data(), g.dwo, g.dbo, threads, check_dout);
    dctx.swap(dh);
  }
  if (!dout_finite) throw NonFiniteInput(NonFiniteInput::kOutputGradient);

  // Attention.
  Buffer<T> dq(static_cast<size_t>(BT * pw.q)), dk(static_cast<size_t>(BS * pw.k)),
      dv(static_cast<size_t>(BS * pw.v));
  flash_attention_backward(d, c.ops, c.ctx, c.lse.data(), mask, drop,
                           inverse_sqrt_key_dim<T>(d.H), dctx, dq.data(), dk.data(), dv.data(),
                           threads);
  Buffer<T>().swap(dctx);
  c = MhaCache<T>();

  // Input projections (query with the gate's term, key, value) in one
  // parallel pass, the input gradients written in the caller's layout. Its
  // fresh arrays are mapped in (now that the attention's buffers are gone)
  // by one thread, in the order the blocks write them, while the other
  // starts on the query blocks: a block writes its rows of dx only after
  // its products.
  auto populate_dx = [&] {
    if (cg.dxq) populate_pages(cg.dxq, static_cast<size_t>(BT * d.E) * sizeof(double));
    if (cg.dxk) populate_pages(cg.dxk, static_cast<size_t>(BS * d.Dk) * sizeof(double));
    if (cg.dxv) populate_pages(cg.dxv, static_cast<size_t>(BS * d.Dv) * sizeof(double));
  };
  std::vector<BackwardTerm<T>> q_terms;
  if (w.wg) q_terms.push_back({dz.data(), pw.ctx, w.wg, g.dwg, g.dbg});
  q_terms.push_back({dq.data(), pw.q, w.wq, g.dwq, g.dbq});
  dense_backward_colmajor_x<T>(
      {ColMajorBackward<T>{io.xq, BT, io.q_row, BT, d.E, q_terms, cg.dxq, BT},
       ColMajorBackward<T>{io.xk, BS, io.kv_row, BS, d.Dk, {{dk.data(), pw.k, w.wk, g.dwk, g.dbk}},
                           cg.dxk, BS},
       ColMajorBackward<T>{io.xv, BS, io.kv_row, BS, d.Dv,
                           {{dv.data(), pw.v, w.wv, g.dwv, g.dbv}}, cg.dxv, BS}},
      threads, populate_dx);
}

template <class T>
void mha_forward_backward_colmajor(const MhaDims& d, const MhaColumnMajorIO& io,
                                   const MhaWeights<T>& w, const AttentionMask& mask,
                                   const DropoutSpec& drop, const MhaColumnMajorGrads& cg,
                                   const MhaGrads<T>& g, int threads) {
  if (!cg.dout) throw std::invalid_argument("multihead core: mha_forward_backward_colmajor needs dout");
  MhaCache<T> c;
  forward_colmajor(d, io, w, mask, drop, threads, true, c);
  mha_backward_colmajor(d, io, w, mask, drop, c, cg, g, threads);
}

template <class T>
void mha_backward(const MhaDims& d, const T* xq, const T* xk, const T* xv,
                  const MhaWeights<T>& w, const AttentionMask& mask, const DropoutSpec& drop,
                  MhaCache<T>& c, const T* dout, const MhaGrads<T>& g, int threads) {
  check_dims(d);
  const idx BT = d.B * d.T, BS = d.B * d.S;
  const ProjectionWidths pw(d);
  const bool cached = c.path != MhaPath::kFlashInPlace &&
                      (c.flash ? c.lse.size() == static_cast<size_t>(d.B * d.N * d.T)
                               : c.probs.size() == static_cast<size_t>(d.B * d.N * d.T * d.S));
  if (!cached || c.ctx.size() != static_cast<size_t>(BT * pw.ctx)) {
    throw std::invalid_argument("multihead core: backward needs the forward cache");
  }

  // Output projection: out = h Wo + bo.
  Buffer<T> dh(static_cast<size_t>(BT * pw.ctx));
  dense_backward_input(dout, BT, d.O, w.wo, pw.ctx, dh.data(), false, threads);
  Buffer<T> dctx;
  if (w.wg) {
    const Buffer<T> h = gated(c.ctx, c.gate);
    Buffer<T> dz;
    gate_backward(dh, c.ctx, c.gate, &dctx, &dz);
    dense_backward_weights(h.data(), dout, BT, pw.ctx, d.O, g.dwo, g.dbo, threads);
    dense_backward_weights(xq, dz.data(), BT, d.E, pw.ctx, g.dwg, g.dbg, threads);
    dense_backward_input(dz.data(), BT, pw.ctx, w.wg, d.E, g.dxq, false, threads);
  } else {
    dense_backward_weights(c.ctx.data(), dout, BT, pw.ctx, d.O, g.dwo, g.dbo, threads);
    dctx.swap(dh);
  }

  // Attention.
  Buffer<T> dq(static_cast<size_t>(BT * pw.q)), dk(static_cast<size_t>(BS * pw.k)),
      dv(static_cast<size_t>(BS * pw.v));
  if (c.flash) {
    flash_attention_backward(d, c.ops, c.ctx, c.lse.data(), mask, drop,
                             inverse_sqrt_key_dim<T>(d.H), dctx, dq.data(), dk.data(), dv.data(),
                             threads);
  } else {
    attention_backward(d, c.q.data(), c.k.data(), c.v.data(), c.probs.data(), drop,
                       inverse_sqrt_key_dim<T>(d.H), dctx.data(), dq.data(), dk.data(),
                       dv.data(), threads);
  }
  Buffer<T>().swap(dctx);
  c = MhaCache<T>();  // everything below needs only the inputs and dq, dk, dv

  // Input projections.
  dense_backward_weights(xq, dq.data(), BT, d.E, pw.q, g.dwq, g.dbq, threads);
  dense_backward_input(dq.data(), BT, pw.q, w.wq, d.E, g.dxq, w.wg != nullptr, threads);
  dense_backward_weights(xk, dk.data(), BS, d.Dk, pw.k, g.dwk, g.dbk, threads);
  dense_backward_input(dk.data(), BS, pw.k, w.wk, d.Dk, g.dxk, false, threads);
  dense_backward_weights(xv, dv.data(), BS, d.Dv, pw.v, g.dwv, g.dbv, threads);
  dense_backward_input(dv.data(), BS, pw.v, w.wv, d.Dv, g.dxv, false, threads);
}

// ---- one call ------------------------------------------------------------------

MhaPath mha_choose_path(const MhaCallFacts& f) {
  if (f.scores) return MhaPath::kMaterialised;
  if (f.flash && f.in_place_io) return MhaPath::kFlashInPlace;
  if (f.flash) return MhaPath::kFlashConverted;
  return MhaPath::kMaterialised;
}

namespace {

// The three paths, one contract: the forward of `call` (writing call.io.out
// in place, else call.out and call.scores), keeping the backward's needs in
// `keep` when it is not null.
template <class T>
void forward_flash_in_place(const MhaCall<T>& call, MhaCache<T>* keep) {
  MhaCache<T> local;
  forward_colmajor(call.d, call.io, call.w, call.mask, call.drop, call.threads, keep != nullptr,
                   keep ? *keep : local);
}

template <class T>
void forward_flash_converted(const MhaCall<T>& call, MhaCache<T>* keep) {
  if (call.scores) throw std::invalid_argument("multihead core: the flash path returns no scores");
  mha_forward(call.d, call.xq, call.xk, call.xv, call.w, call.mask, call.drop, true, call.threads,
              call.out, static_cast<T*>(nullptr), keep);
}

template <class T>
void forward_materialised(const MhaCall<T>& call, MhaCache<T>* keep) {
  mha_forward(call.d, call.xq, call.xk, call.xv, call.w, call.mask, call.drop, false,
              call.threads, call.out, call.scores, keep);
  if (keep) keep->path = MhaPath::kMaterialised;
}

}  // namespace

template <class T>
void mha_forward_path(MhaPath path, const MhaCall<T>& call, MhaCache<T>* keep) {
  switch (path) {
    case MhaPath::kFlashInPlace: forward_flash_in_place(call, keep); break;
    case MhaPath::kFlashConverted: forward_flash_converted(call, keep); break;
    case MhaPath::kMaterialised: forward_materialised(call, keep); break;
  }
  if (keep) keep->path = path;
}

template <class T>
void mha_backward_path(const MhaCall<T>& call, MhaCache<T>& cache, const MhaBackwardIO<T>& io) {
  if (cache.path == MhaPath::kFlashInPlace) {
    mha_backward_colmajor(call.d, call.io, call.w, call.mask, call.drop, cache, io.cg, io.g,
                          call.threads);
  } else {
    mha_backward(call.d, call.xq, call.xk, call.xv, call.w, call.mask, call.drop, cache, io.dout,
                 io.g, call.threads);
  }
}

#define MH_INSTANTIATE_MHA(T)                                                               \
  template void mha_forward<T>(const MhaDims&, const T*, const T*, const T*,                \
                               const MhaWeights<T>&, const AttentionMask&, const DropoutSpec&, \
                               bool, int, T*, T*, MhaCache<T>*);                             \
  template void mha_forward_colmajor<T>(const MhaDims&, const MhaColumnMajorIO&,            \
                                        const MhaWeights<T>&, const AttentionMask&,          \
                                        const DropoutSpec&, int);                            \
  template void mha_forward_backward_colmajor<T>(                                           \
      const MhaDims&, const MhaColumnMajorIO&, const MhaWeights<T>&, const AttentionMask&,  \
      const DropoutSpec&, const MhaColumnMajorGrads&, const MhaGrads<T>&, int);             \
  template void mha_backward_colmajor<T>(                                                   \
      const MhaDims&, const MhaColumnMajorIO&, const MhaWeights<T>&, const AttentionMask&,  \
      const DropoutSpec&, MhaCache<T>&, const MhaColumnMajorGrads&, const MhaGrads<T>&, int); \
  template void mha_backward<T>(const MhaDims&, const T*, const T*, const T*,               \
                                const MhaWeights<T>&, const AttentionMask&, const DropoutSpec&, \
                                MhaCache<T>&,                                                \
                                const T*, const MhaGrads<T>&, int);                         \
  template void mha_forward_path<T>(MhaPath, const MhaCall<T>&, MhaCache<T>*);              \
  template void mha_backward_path<T>(const MhaCall<T>&, MhaCache<T>&, const MhaBackwardIO<T>&);

MH_INSTANTIATE_MHA(float)
MH_INSTANTIATE_MHA(double)

}  // namespace mh
