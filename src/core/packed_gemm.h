// The packed float GEMM of the column-major projections (when cpu_dispatch.h
// chose AVX2 + FMA): the weights are packed once per call into strips of 16
// columns, each block of x is converted from R's doubles straight into
// panels of 6 rows, and the 6 x 16 register block of simd_kernels.h runs
// over them starting from the bias (no zero or bias pass over y). On the
// portable path packed_projection() is false and the products here throw.
//
// Also here: gemm(), the general product of the dense kernels' blocks
// (simd_kernels.h's packed gemm_f32 for float on the AVX2 path, Eigen's
// GEMM otherwise).
//
// Layouts:
//   PackedWeights::data: w (in, out) as strips of 16 columns,
//     data[(s * in + p) * 16 + j] = w[p, 16 s + j], zero past `out`.
//   panels: a[(q * in + f) * 6 + i] = x(r0 + 6 q + i, f), zero past nr.
#pragma once

#include <algorithm>
#include <stdexcept>

#include "cpu_dispatch.h"
#include "layout.h"

namespace mh {

struct PackedWeights {
  Buffer<float> data;
  idx in = 0, out = 0;
};

// Whether the packed kernels run (float only): the AVX2 + FMA path.
inline bool packed_projection() { return use_avx2(); }
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

// (The pack_* and store_columns functions take the AVX2 path only.)
// Panels of rows r0 .. r0 + nr - 1 of the column-major doubles x (x(r, f) at
// x[r + f * ldx]). Returns false if `check` and a converted value was not
// finite (NA, NaN, Inf, or a double beyond float's range).
bool pack_panels(const double* x, idx ldx, idx r0, idx nr, idx in, float* a, bool check);

// Panels of rows x_row[r0 .. r0 + nr - 1] of the row-major float x (rows of
// `in` values).
void pack_panels_gather(const float* x, const idx* x_row, idx r0, idx nr, idx in, float* a);


// y (nr, out) = (the nr rows packed in panels a) times w, plus b (may be
// null), y(i, j) written at rows[i][strip_off[s] + j - 16 s] for the strip
// s = j / 16 holding column j (strip_off null: 16 s; 16 columns of a row are
// contiguous). Sums over the features in order, in chunks of kPackedDepth.
void packed_multiply_rows(const float* a, idx nr, const PackedWeights& w, const float* b,
                          float* const* rows, const idx* strip_off);

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

// C (M, N) row-major (C(i, j) = c[i * ldc + j]) = or += A (M, K) B (K, N),
// A(i, p) = a[i * a_rs + p * a_cs], B(p, j) = b[p * b_rs + j * b_cs]: any
// transposes through the strides. Float on the AVX2 path: the packed kernel
// (its scratch per thread, kept for the thread's life); else Eigen's GEMM.
// The summation order depends on the shapes only (not threads).
template <class T>
void gemm(idx M, idx N, idx K, const T* a, idx a_rs, idx a_cs, const T* b, idx b_rs, idx b_cs,
          T* c, idx ldc, bool accumulate);

}  // namespace mh
