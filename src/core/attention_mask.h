// Evaluates the combined attention mask (see layout.h) one query row at a
// time, for the materialised and the flash kernels alike.
#pragma once

#include <cstdlib>

#include "layout.h"

namespace mh {

// The mask of one (batch b, head n, query t) row.
class MaskRow {
 public:
  MaskRow(const AttentionMask& m, const MhaDims& d, idx b, idx n, idx t)
      : m_(m), t_(t + m.query_offset) {
    if (m.mask) {
      const idx bm = m.mask_b == 1 ? 0 : b, nm = m.mask_n == 1 ? 0 : n;
      row_ = m.mask + ((bm * m.mask_n + nm) * d.T + t) * d.S;
    }
    if (m.kmask) krow_ = m.kmask + b * d.S;
    query_ok_ = !m.qmask || m.qmask[b * d.T + t] != 0;
  }
  // t_ is the query's position among the keys (t + m.query_offset).

  // False when the whole row is masked by the query mask.
  bool query_ok() const { return query_ok_; }

  // Whether key s may be attended (assumes query_ok()).
  bool allowed(idx s) const {
    if (row_ && row_[s] == 0) return false;
    if (krow_ && krow_[s] == 0) return false;
    if (m_.causal && s > t_) return false;
    if (m_.window > 0 && std::llabs(static_cast<long long>(t_ - s)) >= m_.window) return false;
    return true;
  }

  // Keys outside [lo, hi) are masked by the causal flag and the window alone;
  // kernels use this to skip whole key tiles.
  idx key_begin() const {
    return m_.window > 0 ? (t_ - m_.window + 1 > 0 ? t_ - m_.window + 1 : 0) : 0;
  }
  idx key_end(idx S) const {
    idx hi = S;
    if (m_.causal && t_ + 1 < hi) hi = t_ + 1;
    if (m_.window > 0 && t_ + m_.window < hi) hi = t_ + m_.window;
    return hi;
  }

 private:
  const AttentionMask& m_;
  idx t_;
  const int32_t* row_ = nullptr;
  const int32_t* krow_ = nullptr;
  bool query_ok_ = true;
};

}  // namespace mh
