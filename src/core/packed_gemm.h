// The packed float GEMM of the column-major projections (AVX2 + FMA builds):
// the weights are packed once per call into strips of 16 columns, each block
// of x is converted from R's doubles straight into panels of 6 rows, and
// tile_gemm.h's 6 x 16 register block runs over them starting from the bias
// (no zero or bias pass over y). Without AVX2 + FMA, kPackedProjection is
// false and the products here throw.
//
// Layouts:
//   PackedWeights::data: w (in, out) as strips of 16 columns,
//     data[(s * in + p) * 16 + j] = w[p, 16 s + j], zero past `out`.
//   panels: a[(q * in + f) * 6 + i] = x(r0 + 6 q + i, f), zero past nr.
#pragma once

#include <algorithm>
#include <stdexcept>

#include "layout.h"
#include "tile_gemm.h"

namespace mh {

struct PackedWeights {
  Buffer<float> data;
  idx in = 0, out = 0;
};

#ifdef MH_TILE_GEMM_AVX2
constexpr bool kPackedProjection = true;
#else
constexpr bool kPackedProjection = false;
#endif
constexpr idx kPanelRows = 6;      // rows of x per panel (register block rows)
constexpr idx kStrip = 16;         // columns of w per strip (register block columns)
constexpr idx kPackedDepth = 256;  // features of x per pass over a block of y

PackedWeights pack_weights(const float* w, idx in, idx out);

// Rows of x per task of the packed kernel (a function of the shapes only):
// a block's panels and its y stay within a 1 MiB L2 cache.
idx packed_row_block(idx in, idx out);

// Floats of scratch packed_projection_block needs for up to nr rows: the
// panels of x, then y.
idx packed_scratch_floats(idx nr, idx in, idx out);

// Panels of rows r0 .. r0 + nr - 1 of the column-major doubles x (x(r, f) at
// x[r + f * ldx]). Returns false if `check` and a converted value was not
// finite (NA, NaN, Inf, or a double beyond float's range).
bool pack_panels(const double* x, idx ldx, idx r0, idx nr, idx in, float* a, bool check);

// Panels of rows x_row[r0 .. r0 + nr - 1] of the row-major float x (rows of
// `in` values).
void pack_panels_gather(const float* x, const idx* x_row, idx r0, idx nr, idx in, float* a);

#ifdef MH_TILE_GEMM_AVX2
namespace packed_detail {
// One register block of R rows of y (R = 1 .. 6), columns [16 s, 16 s + n),
// row r written from row_at(r).
template <int R, class RowAt>
void packed_block(idx n, idx K, const float* a, const float* b, RowAt row_at, bool accumulate,
                  const float* init) {
  if (n == kStrip) {
    detail::block_r16_at<R, true>(n, K, a, 1, kPanelRows, b, kStrip, row_at, accumulate, init);
  } else {
    detail::block_r16_at<R, false>(n, K, a, 1, kPanelRows, b, kStrip, row_at, accumulate, init);
  }
}
}  // namespace packed_detail
#endif

// y (nr, out) = (the nr rows packed in panels a) times w, plus b (may be
// null), y(i, j) written at strip_at(i, s) + j - 16 s for the strip s = j / 16
// holding column j (16 columns of a row are contiguous). Sums over the
// features in order, in chunks of kPackedDepth.
template <class StripAt>
void packed_multiply_to(const float* a, idx nr, const PackedWeights& w, const float* b,
                        StripAt strip_at) {
#ifdef MH_TILE_GEMM_AVX2
  const idx in = w.in, out = w.out, panels = (nr + kPanelRows - 1) / kPanelRows;
  const idx strips = (out + kStrip - 1) / kStrip;
  for (idx k0 = 0; k0 < in; k0 += kPackedDepth) {
    const idx kc = std::min(kPackedDepth, in - k0);
    for (idx s = 0; s < strips; ++s) {
      const idx n = std::min(kStrip, out - s * kStrip);
      const float* bs = w.data.data() + (s * in + k0) * kStrip;
      const float* init = k0 == 0 && b ? b + s * kStrip : nullptr;
      for (idx q = 0; q < panels; ++q) {
        const float* aq = a + (q * in + k0) * kPanelRows;
        const idx i0 = q * kPanelRows;
        auto row_at = [&strip_at, i0, s](int r) { return strip_at(i0 + r, s); };
        switch (std::min(kPanelRows, nr - i0)) {
          case 6: packed_detail::packed_block<6>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          case 5: packed_detail::packed_block<5>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          case 4: packed_detail::packed_block<4>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          case 3: packed_detail::packed_block<3>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          case 2: packed_detail::packed_block<2>(n, kc, aq, bs, row_at, k0 > 0, init); break;
          default: packed_detail::packed_block<1>(n, kc, aq, bs, row_at, k0 > 0, init); break;
        }
      }
    }
  }
#else
  (void)a, (void)nr, (void)w, (void)b, (void)strip_at;
  throw std::logic_error("multihead core: the packed projection needs AVX2 + FMA");
#endif
}

// The same into the row-major y (nr, out).
void packed_multiply(const float* a, idx nr, const PackedWeights& w, const float* b, float* y);

// y (nr, out) row-major = rows r0 .. r0 + nr - 1 of the column-major x times
// w, plus b (may be null), using `scratch` (packed_scratch_floats(nr, in,
// out) floats; y is its tail, returned). Returns false in *ok if `check` and
// a value of x was not finite.
float* packed_projection_block(const double* x, idx ldx, idx r0, idx nr, const PackedWeights& w,
                               const float* b, float* scratch, bool check, bool* ok);

// dst[col(j) * ldy + i] = y[i * out + j] as doubles (i < nr, j < out;
// col(j) = y_col[j], or j when y_col is null): a row-major float block
// written into the columns of an R matrix (8 x 8 transposes with AVX2).
void store_columns(const float* y, idx nr, idx out, const idx* y_col, double* dst, idx ldy);

}  // namespace mh
