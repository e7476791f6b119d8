// The multi-head (and grouped-query) attention layer, forward and backward,
// composed from the dense projections (dense.h, dense_colmajor.h) and the
// attention kernels (attention.h, flash_attention.h). Layouts in layout.h.
// Keras semantics (MultiHeadAttention; GroupedQueryAttention when
// d.Nkv < d.N, its key/value heads shared by groups of query heads):
//   q = xq Wq + bq;  k = xk Wk + bk;  v = xv Wv + bv
//   ctx = attention(q, k, v) with scale 1/sqrt(H)
//   gate (optional) = sigmoid(xq Wg + bg);  h = ctx * gate  (else h = ctx)
//   out = h Wo + bo
//
// A call takes one of three paths, chosen by mha_choose_path() (below) and
// run by mha_forward_path() / mha_backward_path():
//   flash in place   flash kernel; reads R's column-major double inputs and
//                    writes R's output (and input gradients) directly
//   flash converted  flash kernel on row-major copies in the core's layout
//   materialised     (T, S) probabilities stored (scores, or flash off)
#pragma once

#include <stdexcept>
#include <vector>

#include "flash_attention.h"
#include "layout.h"

namespace mh {

// Weights in Keras's shapes, row-major. Bias pointers are null when the layer
// has no biases; gate pointers are null without use_gate.
template <class T>
struct MhaWeights {
  const T* wq = nullptr; const T* bq = nullptr;  // (E, N*H), (N*H)
  const T* wk = nullptr; const T* bk = nullptr;  // (Dk, Nkv*H), (Nkv*H)
  const T* wg = nullptr; const T* bg = nullptr;  // (E, N*Hv), (N*Hv)
  const T* wv = nullptr; const T* bv = nullptr;  // (Dv, Nkv*Hv), (Nkv*Hv)
  const T* wo = nullptr; const T* bo = nullptr;  // (N*Hv, O), (O)
};

// Gradient outputs, same shapes as the inputs and weights. Every pointer whose
// weight exists must be non-null; all are overwritten. An input gradient's
// pointer may be null: that gradient is not computed (a model's inputs in a
// training step).
template <class T>
struct MhaGrads {
  T* dxq = nullptr; T* dxk = nullptr; T* dxv = nullptr;
  T* dwq = nullptr; T* dbq = nullptr;
  T* dwk = nullptr; T* dbk = nullptr;
  T* dwg = nullptr; T* dbg = nullptr;
  T* dwv = nullptr; T* dbv = nullptr;
  T* dwo = nullptr; T* dbo = nullptr;
};

// The paths of a call (see the top of this file).
enum class MhaPath { kFlashInPlace, kFlashConverted, kMaterialised };

// What the backward pass needs from the forward pass.
template <class T>
struct MhaCache {
  MhaPath path = MhaPath::kMaterialised;  // the path that filled it
  Buffer<T> q, k, v;       // projections (B,T,N,H), (B,S,Nkv,H), (B,S,Nkv,Hv); materialised path
  FlashOperands<T> ops;    // the same projections as the flash kernel reads them; flash path
  Buffer<T> gate;          // (B,T,N*Hv), empty without gate
  Buffer<T> ctx;           // (B,T,N*Hv) attention context (before the gate)
  Buffer<T> probs;         // (B,N,T,S), materialised path only
  Buffer<T> lse;           // (B,N,T) row log-sum-exp, flash path only
  bool flash = false;      // which attention kernel the forward pass used
};

// Computes out (B, T, O). If `scores` is non-null the probabilities
// (B, N, T, S) are written there (this needs the materialised kernel). If
// `cache` is non-null it is filled for mha_backward. With `flash` and no
// scores the flash kernel (flash_attention.h) is used, which never stores
// (T, S) matrices; cache->flash tells which kernel ran.
template <class T>
void mha_forward(const MhaDims& d, const T* xq, const T* xk, const T* xv,
                 const MhaWeights<T>& w, const AttentionMask& mask, const DropoutSpec& drop,
                 bool flash, int threads, T* out, T* scores, MhaCache<T>* cache);

// The layer's inputs and output where the caller keeps them: column-major
// doubles (R arrays seen as matrices), rows in the caller's order.
//   xq (B*T, E), xk (B*S, Dk), xv (B*S, Dv): element (r, f) at x[r + f * rows]
//   q_row (B*T): q_row[r] = b * T + t, the query position of row r of xq;
//     row r of `out` belongs to the same position
//   kv_row (B*S): the same for the rows of xk and xv (b * S + s)
//   out (B*T, O): element (r, f) at out[r + out_col[f] * B*T] (out_col may
//     be null: out_col[f] = f), f the core's output feature (layout.h)
struct MhaColumnMajorIO {
  // Check the inputs (and dout) for NA/NaN/Inf while converting them (in a
  // float computation also for doubles beyond float's range, which convert
  // to +-Inf); such a value throws NonFiniteInput.
  bool check_finite = false;
  const double* xq = nullptr;
  const double* xk = nullptr;
  const double* xv = nullptr;
  const idx* q_row = nullptr;
  const idx* kv_row = nullptr;
  double* out = nullptr;
  const idx* out_col = nullptr;
};

// Thrown by the column-major calls when io.check_finite is set and an input
// holds NA, NaN or Inf. `input` is the first such input in the order query,
// value, key, output gradient.
struct NonFiniteInput : std::invalid_argument {
  enum Input { kQuery = 0, kValue = 1, kKey = 2, kOutputGradient = 3 };
  explicit NonFiniteInput(Input which)
      : std::invalid_argument("multihead core: an input holds NA, NaN or Inf"), input(which) {}
  Input input;
};

// mha_forward with the flash kernel, reading and writing the caller's layout
// directly: each block of input rows is converted to T right before its
// projection, and the output projection writes `out` (so no converted copy
// of an input or of the output exists). Results agree with mha_forward's
// flash path to float rounding (the projections group rows differently).
template <class T>
void mha_forward_colmajor(const MhaDims& d, const MhaColumnMajorIO& io, const MhaWeights<T>& w,
                          const AttentionMask& mask, const DropoutSpec& drop, int threads);

// The output gradient and the input gradients where the caller keeps them
// (see MhaColumnMajorIO): dout (B*T, O) laid out as io.out (same out_col);
// dxq, dxk, dxv laid out as io.xq, io.xk, io.xv (overwritten; three separate
// arrays even when the caller's inputs are one array; null: not computed).
struct MhaColumnMajorGrads {
  const double* dout = nullptr;
  double* dxq = nullptr;
  double* dxk = nullptr;
  double* dxv = nullptr;
};

// mha_forward_colmajor (writes io.out) followed by mha_backward, reading
// dout and writing dxq, dxk, dxv in the caller's layout: dout is converted
// block by block inside the output projection's backward, the input
// gradients are written by their projections' backward, and the weight
// gradients convert the inputs' columns on the fly (no converted copy of an
// input, of dout or of an input gradient exists). g's weight gradients are
// written as by mha_backward (its dx pointers are ignored). Results agree
// with mha_forward + mha_backward (flash) to float rounding; bitwise the same
// for any thread count.
template <class T>
void mha_forward_backward_colmajor(const MhaDims& d, const MhaColumnMajorIO& io,
                                   const MhaWeights<T>& w, const AttentionMask& mask,
                                   const DropoutSpec& drop, const MhaColumnMajorGrads& cg,
                                   const MhaGrads<T>& g, int threads);

// The backward half of mha_forward_backward_colmajor: from a cache filled by
// forward_colmajor with its operands kept (mha_forward_path on the flash in
// place path with a cache), the same io as that forward.
template <class T>
void mha_backward_colmajor(const MhaDims& d, const MhaColumnMajorIO& io, const MhaWeights<T>& w,
                           const AttentionMask& mask, const DropoutSpec& drop, MhaCache<T>& cache,
                           const MhaColumnMajorGrads& cg, const MhaGrads<T>& g, int threads);

// Given dout (B, T, O), writes the gradients of every input and weight.
// `mask` and `drop` must be those of the forward call. The cache is consumed:
// its large buffers are released as the backward pass goes.
template <class T>
void mha_backward(const MhaDims& d, const T* xq, const T* xk, const T* xv,
                  const MhaWeights<T>& w, const AttentionMask& mask, const DropoutSpec& drop,
                  MhaCache<T>& cache, const T* dout, const MhaGrads<T>& g, int threads);

// ---- one call: the path decision and the paths -------------------------------

// What decides a call's path. Dropout, the gate and grouped key/value heads
// are supported on every path, so they do not enter the decision.
struct MhaCallFacts {
  bool flash = false;        // the layer may use the flash kernel for this call
  bool scores = false;       // the call returns the probabilities
  bool in_place_io = false;  // the caller's inputs (and output gradient) are
                             // column-major doubles MhaColumnMajorIO can describe,
                             // and the output's rows are the query's
};

// The one place a call's path is decided:
//   scores                       -> materialised (only it stores probabilities)
//   flash and in_place_io        -> flash in place
//   flash                        -> flash converted
//   otherwise                    -> materialised
MhaPath mha_choose_path(const MhaCallFacts& facts);

// One call: its shapes, weights, masks, dropout, and its inputs and output
// in the form its path reads: `io` for the flash in-place path, the row-major
// pointers (the core's layout) for the other two.
template <class T>
struct MhaCall {
  MhaDims d;
  MhaWeights<T> w;
  AttentionMask mask;
  DropoutSpec drop;
  int threads = 1;
  MhaColumnMajorIO io;  // flash in place: inputs and output
  const T* xq = nullptr;  // converted paths: (B, T, E)
  const T* xk = nullptr;  // (B, S, Dk)
  const T* xv = nullptr;  // (B, S, Dv)
  T* out = nullptr;       // (B, T, O)
  T* scores = nullptr;    // (B, N, T, S) or null (materialised path only)
};

// The backward pass's output gradient and results, in the same forms:
// `cg` (dout, dxq, dxk, dxv) in place, `dout` and g.dx* row-major otherwise;
// the weight gradients in `g` on every path.
template <class T>
struct MhaBackwardIO {
  MhaColumnMajorGrads cg;
  const T* dout = nullptr;  // (B, T, O)
  MhaGrads<T> g;
};

// The forward pass of `call` on `path`. With `keep`, what the backward pass
// needs is kept there (keep->path = path); the call's inputs must then stay
// unchanged until mha_backward_path.
template <class T>
void mha_forward_path(MhaPath path, const MhaCall<T>& call, MhaCache<T>* keep);

// The backward pass from a kept forward (the same call). Consumes the cache.
template <class T>
void mha_backward_path(const MhaCall<T>& call, MhaCache<T>& cache, const MhaBackwardIO<T>& io);

}  // namespace mh
