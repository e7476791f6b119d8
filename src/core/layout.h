// multihead core: data layout and shared types.
//
// The core is plain C++17 + Eigen. It never includes R headers, keeps no
// state between calls that could change a result (its one process-wide
// thing is the cache of large work buffers, large_buffers.h), and reports
// errors by throwing std::exception.
//
// LAYOUT. Every tensor the core sees is dense and ROW-MAJOR ("C order"): the
// last index varies fastest. The R glue converts once at the boundary (R
// arrays are column-major) and permutes the axes so that:
//
//   query   xq   (B, T, E)     B = batch-like positions (batch axis and any
//   key     xk   (B, S, Dk)        axes that are not attention axes, flattened)
//   value   xv   (B, S, Dv)    T, S = query / key attention positions (all
//                                  attention axes flattened, row-major)
//   projected q  (B, T, N, H)   = one GEMM (B*T, E) x (E, N*H)
//   projected k  (B, S, Nkv, H)  Nkv = N, or fewer key/value heads shared by
//   projected v  (B, S, Nkv, Hv)     groups of N / Nkv query heads (MhaDims)
//   context  c   (B, T, N, Hv)  the attention output before the output dense
//   output       (B, T, O)      O = product of the output_shape
//   probs    P   (B, N, T, S)   softmax probabilities (the returned scores)
//
// Weights keep Keras's shapes, row-major, which makes each kernel a plain
// matrix with the input features as rows:
//   Wq (E, N, H) == (E, N*H);  Wk (Dk, Nkv*H);  Wv (Dv, Nkv*Hv);  Wg (E, N*Hv)
//   Wo (N, Hv, O...) == (N*Hv, O);  biases (N*H), (Nkv*H), (Nkv*Hv), (N*Hv), (O)
// So a head's block of q for batch b is the (T, H) matrix starting at
// q + b*T*N*H + n*H with row stride N*H: no copies are needed to attend.
//
// MASKS are int32 (nonzero = may attend), the same bytes as an R logical:
//   mask   (Bm, Nm, T, S)  Bm in {1, B}, Nm in {1, N}; broadcast over the rest
//   qmask  (B, T)          query positions that exist (0 = padding)
//   kmask  (B, S)          key/value positions that exist
// plus a causal flag (key s allowed iff s <= t, top-left aligned) and a
// sliding window w (allowed iff |t - s| < w). All are AND-ed. A query row with
// no allowed key gets all-zero probabilities (its context is zero).
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "large_buffers.h"

namespace mh {

using idx = std::ptrdiff_t;

// SIZES. No buffer may have more than kMaxElements elements (2^52, the
// longest R vector). count_fits() multiplies sizes without overflowing;
// checked_count() throws std::length_error naming `what` BEFORE anything is
// allocated when the product is negative, overflows or is too large.
constexpr idx kMaxElements = idx(1) << 52;

template <class It>
bool count_fits(It first, It last, idx* count) {
  idx n = 1;
  bool zero = false;
  for (It it = first; it != last; ++it) {
    const idx d = *it;
    if (d < 0) return false;
    if (d == 0) { zero = true; continue; }
    if (n > kMaxElements / d) return false;
    n *= d;
  }
  *count = zero ? 0 : n;
  return true;
}

inline idx checked_count(std::initializer_list<idx> dims, const char* what) {
  idx n = 0;
  if (!count_fits(dims.begin(), dims.end(), &n)) {
    throw std::length_error(std::string("multihead core: ") + what +
                            " has a negative size or more than 2^52 elements");
  }
  return n;
}

// Every buffer the core allocates is aligned to Eigen's packet size: Eigen's
// vectorised loops peel differently for differently aligned data, and the
// bits of a result must not depend on where the heap put a buffer.
//
// Buffer<T>(n) and resize(n) leave new elements UNINITIALISED (like new T[n]):
// large buffers are then first touched by the (parallel) code that fills
// them instead of by a serial zero fill. Write Buffer<T>(n, T(0)) when zeros
// are needed.
//
// Buffers of kHugeBufferBytes or more come from large_buffer_acquire()
// (large_buffers.h): their own 2 MiB-aligned mappings with transparent huge
// pages, reused across calls through a small cache, so a call does not pay
// for page faults and the kernel's zeroing of fresh memory.
template <class T>
struct UninitAllocator : Eigen::aligned_allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) {}
  T* allocate(std::size_t n) {
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_alloc();
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kHugeBufferBytes) return Eigen::aligned_allocator<T>::allocate(n);
    return static_cast<T*>(large_buffer_acquire(bytes));
  }
  void deallocate(T* p, std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kHugeBufferBytes) {
      Eigen::aligned_allocator<T>::deallocate(p, n);
    } else {
      large_buffer_release(static_cast<void*>(p), bytes);
    }
  }
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;  // default-initialise: no zeroing
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
template <class T>
using Buffer = std::vector<T, UninitAllocator<T>>;

// Shapes of one multi-head attention call (see the layout above).
struct MhaDims {
  idx B = 0, T = 0, S = 0;   // batch-like, query positions, key positions
  idx E = 0, Dk = 0, Dv = 0; // feature sizes of query, key, value
  idx N = 0, H = 0, Hv = 0;  // heads, key_dim, value_dim
  idx O = 0;                 // output features (product of output_shape)
  // Key/value heads (grouped-query attention): query head n reads key/value
  // head n / (N / Nkv); 0 means N (multi-head attention). N % Nkv == 0.
  idx Nkv = 0;
};

// The number of key/value heads of d, and the key/value head of query head n.
inline idx kv_heads(const MhaDims& d) { return d.Nkv > 0 ? d.Nkv : d.N; }
inline idx kv_head_of(const MhaDims& d, idx n) { return n / (d.N / kv_heads(d)); }

// Which keys each query may attend to.
struct AttentionMask {
  const int32_t* mask = nullptr;  // (Bm, Nm, T, S) or null
  idx mask_b = 1, mask_n = 1;     // Bm, Nm
  const int32_t* qmask = nullptr; // (B, T) or null
  const int32_t* kmask = nullptr; // (B, S) or null
  bool causal = false;
  idx window = 0;                 // 0 = no sliding window
  // Position of query row 0 among the keys, for the causal flag and the
  // window (cached decoding: query row t is position query_offset + t).
  idx query_offset = 0;

  bool any() const {
    return mask || qmask || kmask || causal || window > 0;
  }
};

// Thrown by the attention kernels when a logit (scale * q . k) is beyond the
// range of the type they compute in (an infinite or NaN logit where a key
// may be attended): the result would otherwise be NaN or silently zero.
struct LogitOverflow : std::overflow_error {
  LogitOverflow()
      : std::overflow_error("multihead core: attention logits beyond the range of the computation's type") {}
};

// Dropout on the attention probabilities. Masks are never stored: each
// element's keep/drop decision is a pure function of (key, position), so the
// backward pass regenerates it and thread count cannot change it.
struct DropoutSpec {
  double rate = 0.0;    // in [0, 1]
  uint64_t key = 0;     // derived from the layer seed and its call counter
  bool active() const { return rate > 0.0; }
};

}  // namespace mh
