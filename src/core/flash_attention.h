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

#include <functional>
#include <vector>

#include "layout.h"

namespace mh {

// The projections q (B, T, N, H), k (B, S, Nkv, H), v (B, S, Nkv, Hv) in the
// layout the flash kernel reads (query head n reads key/value head
// kv_head_of(d, n), layout.h), written by the projection GEMMs directly
// (flash_operands_store) and kept between the forward and the backward pass:
// each head contiguous, and k transposed by key tiles, so every tile product
// reads unit-stride rows.
template <class T>
struct FlashOperands {
  Buffer<T> q;   // (B, N, T, H)
  Buffer<T> kt;  // (B, Nkv, ceil(S / tile), H, tile): k^T by key tiles, zero-padded
  Buffer<T> v;   // (B, Nkv, S, Hv)
};

// Keys per tile of FlashOperands::kt (MH_FLASH_KEY_TILE exists for tuning
// builds only).
#ifndef MH_FLASH_KEY_TILE
#define MH_FLASH_KEY_TILE 128
#endif
constexpr idx kFlashKeyTile = MH_FLASH_KEY_TILE;

// Sizes the three buffers of `ops` (contents left undefined).
template <class T>
void flash_operands_allocate(const MhaDims& d, FlashOperands<T>* ops);

// Stores rows r0 .. r0 + nr - 1 of a projection given as `block` (nr, N*W)
// into ops: which = 0 (q: L = T, W = H, N heads), 1 (k: L = S, W = H, Nkv
// heads), 2 (v: L = S, W = Hv, Nkv heads); the block has heads * W columns.
// Row r is row b * L + l of the projection, or, when row_map is not
// null, row row_map[r]. Disjoint rows may be stored concurrently.
template <class T>
void flash_operands_store(const MhaDims& d, int which, idx r0, idx nr, const idx* row_map,
                          const T* block, FlashOperands<T>* ops);

// Stores positions [0, d.S) of key/value head n of batch b (which = 1: k,
// 2: v) from doubles: position s, feature w at src[s * s_stride + w *
// w_stride], converted to T (cached decoding reads the caller's cache so).
// Returns false when a converted value is not finite (NA, NaN, Inf, or a
// double beyond T's range). Distinct (b, n) may be stored concurrently.
template <class T>
bool flash_operands_store_strided(const MhaDims& d, int which, idx b, idx n, const double* src,
                                  idx s_stride, idx w_stride, FlashOperands<T>* ops);

// Direct destinations for q (which = 0) or v (which = 2), for a projection
// kernel that writes rows in place (ColMajorProduct::direct_rows): the
// projection's row r0 + i (row b * L + l, or row_map[r0 + i]) has its head 0
// at rows[i], and its columns [16 s, 16 s + 16) go to rows[i] + strips[s].
// Only when every run of 16 columns stays within one head:
// flash_operands_direct(d, which) tells (W a multiple of 16).
bool flash_operands_direct(const MhaDims& d, int which);
template <class T>
void flash_operands_rows(const MhaDims& d, int which, idx r0, idx nr, const idx* row_map,
                         FlashOperands<T>* ops, T** rows);
std::vector<idx> flash_operands_strips(const MhaDims& d, int which);

// ctx (B, T, N, Hv) = softmax(scale * q k^T, masked) [dropout] v.
// lse (B, N, T): the row log-sum-exp of the masked, scaled logits, +Inf for
// rows where every key is masked (their context is zero). `alongside`, if
// set, runs once on one of the threads while the others start on the tiles
// (it must not touch ctx or lse).
template <class T>
void flash_attention_forward(const MhaDims& d, const FlashOperands<T>& ops,
                             const AttentionMask& mask, const DropoutSpec& drop, T scale, T* ctx,
                             T* lse, int threads,
                             const std::function<void()>& alongside = nullptr);

// Gradients from the forward's ctx (B, T, N, Hv) and lse and dctx
// (B, T, N, Hv); the probabilities (and the dropout mask) are recomputed tile
// by tile. Writes dq (B, T, N, H), dk (B, S, Nkv, H), dv (B, S, Nkv, Hv)
// (overwritten; a key/value head's gradients sum its query heads' terms in
// head order within each key tile, one task per (batch, key/value head, key
// chunk)). `ops`, `ctx` and `dctx` are consumed: their memory is
// released as soon as it has been read, to keep the peak low.
template <class T>
void flash_attention_backward(const MhaDims& d, FlashOperands<T>& ops, Buffer<T>& ctx,
                              const T* lse, const AttentionMask& mask, const DropoutSpec& drop,
                              T scale, Buffer<T>& dctx, T* dq, T* dk, T* dv, int threads);

}  // namespace mh
