// The hand-written AVX2 + FMA float kernels, compiled for that target alone
// in simd_avx2.cpp (and nowhere else). Call them only when
// cpu_dispatch.h's use_avx2() is true: on a CPU without AVX2 or FMA they
// fault. Their callers (tile_gemm.h, packed_gemm.cpp, dense_common.h,
// flash_attention.cpp) hold the portable equivalents.
//
// This header is plain declarations with no inline code, so it can be
// included by both the AVX2 unit and the portable ones (nothing here can be
// instantiated twice with different targets). MH_AVX2_KERNELS is 1 when the
// kernels exist in this build: an x86 target, GCC or Clang (target
// attributes, __builtin_cpu_supports), and MH_NO_AVX2_KERNELS not defined
// (MULTIHEAD_PORTABLE=1 at install defines it).
//
// Layouts are the callers' (see each function); idx = std::ptrdiff_t.
#pragma once

#include <cstddef>

#if !defined(MH_NO_AVX2_KERNELS) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__))
#define MH_AVX2_KERNELS 1
#else
#define MH_AVX2_KERNELS 0
#endif

namespace mh {
namespace avx2 {

using sidx = std::ptrdiff_t;

// C (M, N) = or += A (M, K) B (K, N) on small tiles, without packing:
// A(i, p) = a[i * a_rs + p * a_cs], B(p, j) = b[p * ldb + j], C(i, j) =
// c[i * ldc + j]. Sums over p in order.
void tile_gemm_f32(sidx M, sidx N, sidx K, const float* a, sidx a_rs, sidx a_cs, const float* b,
                   sidx ldb, float* c, sidx ldc, bool accumulate);

// The same for any shapes and strides of B (B(p, j) = b[p * b_rs + j *
// b_cs]), packing A and B in blocks: `scratch` holds gemm_scratch_floats()
// floats. Sums over p in order (in chunks of 256 added to C in turn; with
// at most 2 rows and b_cs == 1, one fused multiply-add per p into C, B read
// in place row by row).
sidx gemm_scratch_floats();
void gemm_f32(sidx M, sidx N, sidx K, const float* a, sidx a_rs, sidx a_cs, const float* b,
              sidx b_rs, sidx b_cs, float* c, sidx ldc, bool accumulate, float* scratch);

// The packed projection (packed_gemm.h): the nr rows of x packed in panels
// `a` times the weights packed in strips `w` (in, out), plus `bias` (may be
// null); y(i, j) goes to rows[i][strip_off[s] + j - 16 s] for the strip
// s = j / 16 (strip_off null: 16 s).
void packed_multiply_f32(const float* a, sidx nr, const float* w, sidx in, sidx out,
                         const float* bias, float* const* rows, const sidx* strip_off);

// The full panels (nr / 6 of them) of pack_panels (packed_gemm.h) from the
// column-major doubles x; returns false if `check` and a converted value was
// not finite.
bool pack_full_panels_f64(const double* x, sidx ldx, sidx r0, sidx nr, sidx in, float* a,
                          bool check);

// pack_panels_gather (packed_gemm.h): one panel of 6 rows (src[i] null:
// a zero row) of `in` floats.
void pack_panel_rows_f32(const float* const* src, sidx in, float* dst);

// Rows i0 .. of store_columns (packed_gemm.h) in blocks of 8 x 8; returns
// the first row not written (a multiple of 8 below nr).
sidx store_columns_f32(const float* y, sidx nr, sidx out, const sidx* y_col, double* dst,
                       sidx ldy);

// dst[i] = src[i] converted, i < n; the _finite form also returns whether
// every converted value is finite.
void convert_f64_f32(const double* src, sidx n, float* dst);
bool convert_f64_f32_finite(const double* src, sidx n, float* dst);
void convert_f32_f64(const float* src, sidx n, double* dst);

// The flash kernel's softmax steps (flash_attention.cpp, softmax_run and
// exp_from_lse).
float softmax_run_f32(const float* x, sidx n, float scale, float m_old, float* m_new, float* p);
void exp_from_lse_f32(float* p, sidx n, float scale, float L);
// dp[j] = p[j] * (dp[j] - D), j < n (the softmax backward).
void softmax_grad_f32(const float* p, float* dp, sidx n, float D);

// out[c * ldo + r] = in[r * ldi + c] for r < rows, c < cols.
void transpose_block_f32(const float* in, sidx ldi, sidx rows, sidx cols, float* out, sidx ldo);
// o[w * ld + j] = rows[j][w] for j < m, w < W.
void store_transposed_f32(const float* const* rows, sidx m, sidx W, sidx ld, float* o);

}  // namespace avx2
}  // namespace mh
