// The AVX2 + FMA float kernels declared in simd_kernels.h: the only code of
// the package compiled for that target (a GCC target pragma, or Clang's
// attribute pragma, over this whole file; no -m flag anywhere). They run
// only when cpu_dispatch.h decided the CPU has AVX2 and FMA.
//
// This file must include nothing but simd_kernels.h, <cstddef> and
// <immintrin.h>: no Eigen, no standard-library templates, no inline function
// of another header. An inline function or template instantiated here would
// be compiled for AVX2, and the linker may keep that copy for every unit
// that uses it (one definition rule), so a CPU without AVX2 would run it.
// Everything besides the declared entry points has internal linkage.
//
// Summation orders are fixed by the shapes (never by threads or alignment).
#include "simd_kernels.h"

#if MH_AVX2_KERNELS

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#include <immintrin.h>

// Fully unrolled loops over the register block (the accumulators must stay
// in registers).
#if defined(__clang__)
#define MH_UNROLL _Pragma("unroll")
#else
#define MH_UNROLL _Pragma("GCC unroll 8")
#endif

#include "simd_exp.h"

namespace mh {
namespace avx2 {

namespace {

inline sidx min_idx(sidx a, sidx b) { return a < b ? a : b; }

constexpr sidx kRows = 6;    // rows of the register block (and of a panel)
constexpr sidx kCols = 16;   // columns of the register block (and of a strip)

// In-register transpose of an 8 x 8 block of floats (r[i] = row i in, column
// i out).
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Lane mask for the first n (0..8) of 8 floats.
inline __m256i lane_mask(sidx n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lanes);
}

// One register block: R rows (R <= 6) and n <= 16 columns (Full: n = 16) of
// C, row r at crow[r], += or = the R x K block of A (A(r, p) = a[r * a_rs +
// p * a_cs]) times the K x n block of B (B(p, j) = b[p * ldb + j]). Without
// `accumulate` the block starts from `init` (16 values, the same for every
// row: a bias) when it is set, else from zero. The sum runs over p in order.
// ARS, ACS, LDB, when not 0, are a_rs, a_cs and ldb known at compile time
// (the packed panels and strips, or a unit stride of A): the addressing of
// the inner loop then needs fewer registers, which the flash tiles' small
// products feel (bench/README.md, the run-time SIMD dispatch section).
template <int R, bool Full, sidx ARS, sidx ACS, sidx LDB>
inline void block_r16(sidx n, sidx K, const float* a, sidx a_rs_rt, sidx a_cs_rt, const float* b,
                      sidx ldb_rt, float* const* crow, bool accumulate, const float* init) {
  const sidx a_rs = ARS ? ARS : a_rs_rt, a_cs = ACS ? ACS : a_cs_rt, ldb = LDB ? LDB : ldb_rt;
  __m256 acc0[R], acc1[R];
  const __m256i m0 = lane_mask(n < 8 ? n : 8), m1 = lane_mask(n > 8 ? n - 8 : 0);
  __m256 init0 = _mm256_setzero_ps(), init1 = _mm256_setzero_ps();
  if (init && !accumulate) {
    init0 = Full ? _mm256_loadu_ps(init) : _mm256_maskload_ps(init, m0);
    init1 = Full ? _mm256_loadu_ps(init + 8) : _mm256_maskload_ps(init + 8, m1);
  }
MH_UNROLL
  for (int r = 0; r < R; ++r) {
    if (accumulate) {
      if (Full) {
        acc0[r] = _mm256_loadu_ps(crow[r]);
        acc1[r] = _mm256_loadu_ps(crow[r] + 8);
      } else {
        acc0[r] = _mm256_maskload_ps(crow[r], m0);
        acc1[r] = _mm256_maskload_ps(crow[r] + 8, m1);
      }
    } else {
      acc0[r] = init0;
      acc1[r] = init1;
    }
  }
  for (sidx p = 0; p < K; ++p) {
    const float* bp = b + p * ldb;
    __m256 b0, b1;
    if (Full) {
      b0 = _mm256_loadu_ps(bp);
      b1 = _mm256_loadu_ps(bp + 8);
    } else {
      b0 = _mm256_maskload_ps(bp, m0);
      b1 = _mm256_maskload_ps(bp + 8, m1);
    }
    const float* ap = a + p * a_cs;
  MH_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(ap + r * a_rs);
      acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
    }
  }
MH_UNROLL
  for (int r = 0; r < R; ++r) {
    if (Full) {
      _mm256_storeu_ps(crow[r], acc0[r]);
      _mm256_storeu_ps(crow[r] + 8, acc1[r]);
    } else {
      _mm256_maskstore_ps(crow[r], m0, acc0[r]);
      _mm256_maskstore_ps(crow[r] + 8, m1, acc1[r]);
    }
  }
}

// The block for R = rows (1 .. 6) rows, full or partial columns.
template <int R, sidx ARS, sidx ACS, sidx LDB>
inline void block_n(sidx n, sidx K, const float* a, sidx a_rs, sidx a_cs, const float* b,
                    sidx ldb, float* const* crow, bool accumulate, const float* init) {
  if (n == kCols) {
    block_r16<R, true, ARS, ACS, LDB>(n, K, a, a_rs, a_cs, b, ldb, crow, accumulate, init);
  } else {
    block_r16<R, false, ARS, ACS, LDB>(n, K, a, a_rs, a_cs, b, ldb, crow, accumulate, init);
  }
}

template <sidx ARS, sidx ACS, sidx LDB>
inline void block_any(sidx rows, sidx n, sidx K, const float* a, sidx a_rs, sidx a_cs,
                      const float* b, sidx ldb, float* const* crow, bool accumulate,
                      const float* init) {
  switch (rows) {
    case 6: block_n<6, ARS, ACS, LDB>(n, K, a, a_rs, a_cs, b, ldb, crow, accumulate, init); break;
    case 5: block_n<5, ARS, ACS, LDB>(n, K, a, a_rs, a_cs, b, ldb, crow, accumulate, init); break;
    case 4: block_n<4, ARS, ACS, LDB>(n, K, a, a_rs, a_cs, b, ldb, crow, accumulate, init); break;
    case 3: block_n<3, ARS, ACS, LDB>(n, K, a, a_rs, a_cs, b, ldb, crow, accumulate, init); break;
    case 2: block_n<2, ARS, ACS, LDB>(n, K, a, a_rs, a_cs, b, ldb, crow, accumulate, init); break;
    case 1: block_n<1, ARS, ACS, LDB>(n, K, a, a_rs, a_cs, b, ldb, crow, accumulate, init); break;
    default: break;
  }
}

// A panel of packed A (6 rows, a_rs = 1, a_cs = 6) against a packed strip of
// B (ldb = 16).
inline void block_packed(sidx rows, sidx n, sidx K, const float* a, const float* b,
                         float* const* crow, bool accumulate, const float* init) {
  block_any<1, kRows, kCols>(rows, n, K, a, 1, kRows, b, kCols, crow, accumulate, init);
}

// The unpacked tile kernel over the rows [0, M) and columns [0, N) of C.
template <sidx ARS, sidx ACS>
void tile_rows(sidx M, sidx N, sidx K, const float* a, sidx a_rs, sidx a_cs, const float* b,
               sidx ldb, float* c, sidx ldc, bool accumulate) {
  for (sidx i = 0; i < M; i += kRows) {
    const sidx rows = min_idx(kRows, M - i);
    for (sidx j = 0; j < N; j += kCols) {
      float* crow[kRows];
      for (sidx r = 0; r < rows; ++r) crow[r] = c + (i + r) * ldc + j;
      block_any<ARS, ACS, 0>(rows, min_idx(kCols, N - j), K, a + i * a_rs, a_rs, a_cs, b + j,
                             ldb, crow, accumulate, nullptr);
    }
  }
}

// The generic GEMM's blocking: B in blocks of kGemmK x kGemmN packed in
// strips of 16 columns (256 KiB, in the L2 cache), A in blocks of kGemmM x
// kGemmK packed in panels of 6 rows (96 KiB); each 16 KiB strip stays in the
// L1 cache while the panels of the A block pass over it.
constexpr sidx kGemmK = 256;
constexpr sidx kGemmN = 256;
constexpr sidx kGemmM = 96;

// B block (rows k0 .., kb of them; columns j0 .., nb of them) into strips:
// bp[(s * kb + p) * 16 + j] = B(k0 + p, j0 + 16 s + j), zero past nb.
void pack_b(const float* b, sidx b_rs, sidx b_cs, sidx k0, sidx kb, sidx j0, sidx nb, float* bp) {
  const sidx strips = (nb + kCols - 1) / kCols;
  for (sidx s = 0; s < strips; ++s) {
    const sidx n = min_idx(kCols, nb - s * kCols);
    float* d = bp + s * kb * kCols;
    const float* src = b + k0 * b_rs + (j0 + s * kCols) * b_cs;
    if (b_cs == 1 && n == kCols) {
      for (sidx p = 0; p < kb; ++p) {
        _mm256_storeu_ps(d + p * kCols, _mm256_loadu_ps(src + p * b_rs));
        _mm256_storeu_ps(d + p * kCols + 8, _mm256_loadu_ps(src + p * b_rs + 8));
      }
    } else if (b_rs == 1) {  // columns of B contiguous: 8 x 8 transposes, then the rest
      sidx p0 = 0;
      for (; p0 + 8 <= kb; p0 += 8)
        for (sidx h = 0; h + 8 <= n; h += 8) {
          __m256 v[8];
          for (int c = 0; c < 8; ++c) v[c] = _mm256_loadu_ps(src + (h + c) * b_cs + p0);
          transpose8(v);  // v[r]: B(k0 + p0 + r, columns h .. h + 7 of the strip)
          for (int r = 0; r < 8; ++r) _mm256_storeu_ps(d + (p0 + r) * kCols + h, v[r]);
        }
      const sidx done_cols = n / 8 * 8;  // columns [0, done_cols) filled for p < p0
      for (sidx j = 0; j < kCols; ++j) {
        const sidx p_start = j < done_cols ? p0 : 0;
        if (j < n) {
          const float* col = src + j * b_cs;
          for (sidx p = p_start; p < kb; ++p) d[p * kCols + j] = col[p];
        } else {
          for (sidx p = 0; p < kb; ++p) d[p * kCols + j] = 0.0f;
        }
      }
    } else {
      for (sidx p = 0; p < kb; ++p)
        for (sidx j = 0; j < kCols; ++j) d[p * kCols + j] = j < n ? src[p * b_rs + j * b_cs] : 0.0f;
    }
  }
}

// A block (rows i0 .., mb of them; columns k0 .., kb of them) into panels:
// ap[(q * kb + p) * 6 + i] = A(i0 + 6 q + i, k0 + p), zero past mb.
void pack_a(const float* a, sidx a_rs, sidx a_cs, sidx i0, sidx mb, sidx k0, sidx kb, float* ap) {
  const sidx panels = (mb + kRows - 1) / kRows;
  for (sidx q = 0; q < panels; ++q) {
    const sidx m = min_idx(kRows, mb - q * kRows);
    float* d = ap + q * kb * kRows;
    const float* src = a + (i0 + q * kRows) * a_rs + k0 * a_cs;
    if (a_rs == 1 && m == kRows) {  // the panel's 6 values of a column are contiguous
      for (sidx p = 0; p < kb; ++p)
        for (sidx i = 0; i < kRows; ++i) d[p * kRows + i] = src[p * a_cs + i];
    } else {
      for (sidx i = 0; i < kRows; ++i) {
        if (i < m) {
          const float* row = src + i * a_rs;
          for (sidx p = 0; p < kb; ++p) d[p * kRows + i] = row[p * a_cs];
        } else {
          for (sidx p = 0; p < kb; ++p) d[p * kRows + i] = 0.0f;
        }
      }
    }
  }
}

}  // namespace

void tile_gemm_f32(sidx M, sidx N, sidx K, const float* a, sidx a_rs, sidx a_cs, const float* b,
                   sidx ldb, float* c, sidx ldc, bool accumulate) {
  if (a_cs == 1) {  // A row-major (Q k^T, dS K)
    tile_rows<0, 1>(M, N, K, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
  } else if (a_rs == 1) {  // A transposed (P^T dO, dS^T Q)
    tile_rows<1, 0>(M, N, K, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
  } else {
    tile_rows<0, 0>(M, N, K, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
  }
}

sidx gemm_scratch_floats() { return kGemmK * kGemmN + kGemmM * kGemmK; }

namespace {

// gemm_f32 for a few rows of C with B read in place (unit column stride):
// the rows of C are updated from B's rows in order, c(i, j) <- fma(a(i, p),
// b(p, j), c(i, j)) for p = 0 .. K-1, over column blocks of C that stay in
// the L1 cache; each B row is read once, contiguously, for all rows of C.
// (The register kernel reads B in strips of 16 columns, rows b_rs apart,
// which for a row length of a multiple of 4 KiB, a 256 x 1024 kernel, is
// several times slower; for a few rows there is no reuse of B to win back.)
// (With 3 or 4 rows the register kernel is faster again for most widths.)
constexpr sidx kSmallRows = 2;
constexpr sidx kSmallBlock = 1024;  // columns of C per block (2 rows: 8 KiB)

template <int R>
void small_rows_block(sidx nj, sidx K, const float* const* ar, sidx a_cs, const float* b, sidx b_rs,
                      float* const* cr, __m256i mask) {
  const sidx full = nj / 8 * 8;
  for (sidx p = 0; p < K; ++p) {
    __m256 av[R];
    MH_UNROLL
    for (int r = 0; r < R; ++r) av[r] = _mm256_set1_ps(ar[r][p * a_cs]);
    const float* bp = b + p * b_rs;
    for (sidx j = 0; j < full; j += 8) {
      const __m256 vb = _mm256_loadu_ps(bp + j);
      MH_UNROLL
      for (int r = 0; r < R; ++r) _mm256_storeu_ps(cr[r] + j, _mm256_fmadd_ps(av[r], vb, _mm256_loadu_ps(cr[r] + j)));
    }
    if (full < nj) {  // (the last block only: blocks are multiples of 8)
      const __m256 vb = _mm256_maskload_ps(bp + full, mask);
      MH_UNROLL
      for (int r = 0; r < R; ++r) {
        _mm256_maskstore_ps(cr[r] + full, mask,
                            _mm256_fmadd_ps(av[r], vb, _mm256_maskload_ps(cr[r] + full, mask)));
      }
    }
  }
}

void gemm_small_rows(sidx M, sidx N, sidx K, const float* a, sidx a_rs, sidx a_cs, const float* b,
                     sidx b_rs, float* c, sidx ldc, bool accumulate) {
  alignas(32) int lanes[8];
  for (int q = 0; q < 8; ++q) lanes[q] = q < N % 8 ? -1 : 0;
  const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
  if (!accumulate)
    for (sidx i = 0; i < M; ++i)
      for (sidx j = 0; j < N; ++j) c[i * ldc + j] = 0.0f;
  const float* ar[kSmallRows];
  float* cr[kSmallRows];
  for (sidx j0 = 0; j0 < N; j0 += kSmallBlock) {
    const sidx nj = min_idx(kSmallBlock, N - j0);
    for (sidx i = 0; i < M; ++i) {
      ar[i] = a + i * a_rs;
      cr[i] = c + i * ldc + j0;
    }
    if (M == 1) {
      small_rows_block<1>(nj, K, ar, a_cs, b + j0, b_rs, cr, mask);
    } else {
      small_rows_block<2>(nj, K, ar, a_cs, b + j0, b_rs, cr, mask);
    }
  }
}

}  // namespace

void gemm_f32(sidx M, sidx N, sidx K, const float* a, sidx a_rs, sidx a_cs, const float* b,
              sidx b_rs, sidx b_cs, float* c, sidx ldc, bool accumulate, float* scratch) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (sidx i = 0; i < M; ++i)
        for (sidx j = 0; j < N; ++j) c[i * ldc + j] = 0.0f;
    return;
  }
  if (M <= kSmallRows && b_cs == 1) {
    gemm_small_rows(M, N, K, a, a_rs, a_cs, b, b_rs, c, ldc, accumulate);
    return;
  }
  float* bp = scratch;
  float* ap = scratch + kGemmK * kGemmN;
  // B with unit column stride is read in place (rows b_rs apart) when A is
  // one block of at most kGemmM rows (a band of a weight gradient: 64 rows
  // against all of dY), where packing B would cost about as much as the
  // product. With more rows every A block passes over the B block again,
  // and the packed strips stay in the caches while strided rows do not; a
  // row stride of a multiple of 4 KiB maps a strip's rows onto a few L1
  // sets, so such a B is packed for any M. The two ways give the same sums
  // in the same order (bitwise the same C).
  const bool b_direct = b_cs == 1 && M <= kGemmM && b_rs % 1024 != 0;
  for (sidx j0 = 0; j0 < N; j0 += kGemmN) {
    const sidx nb = min_idx(kGemmN, N - j0), strips = (nb + kCols - 1) / kCols;
    for (sidx k0 = 0; k0 < K; k0 += kGemmK) {
      const sidx kb = min_idx(kGemmK, K - k0);
      const bool acc = accumulate || k0 > 0;
      if (!b_direct) pack_b(b, b_rs, b_cs, k0, kb, j0, nb, bp);
      for (sidx i0 = 0; i0 < M; i0 += kGemmM) {
        const sidx mb = min_idx(kGemmM, M - i0), panels = (mb + kRows - 1) / kRows;
        pack_a(a, a_rs, a_cs, i0, mb, k0, kb, ap);
        for (sidx s = 0; s < strips; ++s) {
          const sidx n = min_idx(kCols, nb - s * kCols);
          const float* bs = b_direct ? b + k0 * b_rs + j0 + s * kCols : bp + s * kb * kCols;
          for (sidx q = 0; q < panels; ++q) {
            const sidx rows = min_idx(kRows, mb - q * kRows);
            float* crow[kRows];
            for (sidx r = 0; r < rows; ++r) crow[r] = c + (i0 + q * kRows + r) * ldc + j0 + s * kCols;
            if (b_direct) {
              block_any<1, kRows, 0>(rows, n, kb, ap + q * kb * kRows, 1, kRows, bs, b_rs, crow,
                                     acc, nullptr);
            } else {
              block_packed(rows, n, kb, ap + q * kb * kRows, bs, crow, acc, nullptr);
            }
          }
        }
      }
    }
  }
}

void packed_multiply_f32(const float* a, sidx nr, const float* w, sidx in, sidx out,
                         const float* bias, float* const* rows, const sidx* strip_off) {
  constexpr sidx kDepth = 256;  // features per pass over the block (packed_gemm.h)
  const sidx panels = (nr + kRows - 1) / kRows, strips = (out + kCols - 1) / kCols;
  for (sidx k0 = 0; k0 < in; k0 += kDepth) {
    const sidx kc = min_idx(kDepth, in - k0);
    for (sidx s = 0; s < strips; ++s) {
      const sidx n = min_idx(kCols, out - s * kCols);
      const float* bs = w + (s * in + k0) * kCols;
      const float* init = k0 == 0 && bias ? bias + s * kCols : nullptr;
      const sidx off = strip_off ? strip_off[s] : s * kCols;
      for (sidx q = 0; q < panels; ++q) {
        const sidx i0 = q * kRows, m = min_idx(kRows, nr - i0);
        float* crow[kRows];
        for (sidx r = 0; r < m; ++r) crow[r] = rows[i0 + r] + off;
        block_packed(m, n, kc, a + (q * in + k0) * kRows, bs, crow, k0 > 0, init);
      }
    }
  }
}

namespace {

// The full panels of G consecutive columns of x (src: column f's rows from
// r0, columns ldx apart) into a: each panel's 6 x G values are stored
// together (6 G consecutive floats at dst + q * step), and the G columns are
// read as G sequential streams. Non-finite converted values (NA, NaN, Inf,
// or a double beyond float's range) make *acc NaN when `check`.
template <int G>
inline void pack_column_group(const double* src, sidx ldx, sidx full_panels, sidx step,
                              float* dst, bool check, __m128* acc) {
  for (sidx q = 0; q < full_panels; ++q) {
    float* d = dst + q * step;
    const double* s = src + q * kRows;
    for (int c = 0; c < G; ++c) {
      const __m128 f4 = _mm256_cvtpd_ps(_mm256_loadu_pd(s + c * ldx));
      const __m128 f2 = _mm_cvtpd_ps(_mm_loadu_pd(s + c * ldx + 4));  // 2 values, then zeros
      if (check) *acc = _mm_add_ps(*acc, _mm_add_ps(_mm_sub_ps(f4, f4), _mm_sub_ps(f2, f2)));
      _mm_storeu_ps(d + c * kRows, f4);
      _mm_storel_pi(reinterpret_cast<__m64*>(d + c * kRows + 4), f2);
    }
  }
}

}  // namespace

bool pack_full_panels_f64(const double* x, sidx ldx, sidx r0, sidx nr, sidx in, float* a,
                          bool check) {
  const sidx full = nr / kRows, step = in * kRows;
  __m128 acc = _mm_setzero_ps();
  sidx f = 0;
  for (; f + 8 <= in; f += 8)
    pack_column_group<8>(x + f * ldx + r0, ldx, full, step, a + f * kRows, check, &acc);
  for (; f < in; ++f)
    pack_column_group<1>(x + f * ldx + r0, ldx, full, step, a + f * kRows, check, &acc);
  return !check || _mm_movemask_ps(_mm_cmpunord_ps(acc, acc)) == 0;
}

void pack_panel_rows_f32(const float* const* src, sidx in, float* dst) {
  sidx f = 0;
  // 8 features at a time: the 6 rows' runs (and 2 zero rows) transposed in
  // registers, each feature's 6 values stored together
  for (; f + 8 <= in; f += 8) {
    __m256 v[8];
    for (sidx i = 0; i < kRows; ++i) v[i] = src[i] ? _mm256_loadu_ps(src[i] + f) : _mm256_setzero_ps();
    v[6] = v[7] = _mm256_setzero_ps();
    transpose8(v);  // v[c]: feature f + c of rows 0 .. 5, then 2 zeros
    for (int c = 0; c < 8; ++c) {
      float* d = dst + (f + c) * kRows;
      _mm_storeu_ps(d, _mm256_castps256_ps128(v[c]));
      _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(v[c], 1));
    }
  }
  for (; f < in; ++f)
    for (sidx i = 0; i < kRows; ++i) dst[f * kRows + i] = src[i] ? src[i][f] : 0.0f;
}

sidx store_columns_f32(const float* y, sidx nr, sidx out, const sidx* y_col, double* dst,
                       sidx ldy) {
  sidx i0 = 0;
  for (; i0 + 8 <= nr; i0 += 8) {
    sidx j0 = 0;
    for (; j0 + 8 <= out; j0 += 8) {
      __m256 r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(y + (i0 + k) * out + j0);
      transpose8(r);  // r[c]: column j0 + c, rows i0 .. i0 + 7
      for (int c = 0; c < 8; ++c) {
        double* d = dst + (y_col ? y_col[j0 + c] : j0 + c) * ldy + i0;
        _mm256_storeu_pd(d, _mm256_cvtps_pd(_mm256_castps256_ps128(r[c])));
        _mm256_storeu_pd(d + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(r[c], 1)));
      }
    }
    for (; j0 < out; ++j0) {
      double* d = dst + (y_col ? y_col[j0] : j0) * ldy;
      for (sidx i = i0; i < i0 + 8; ++i) d[i] = static_cast<double>(y[i * out + j0]);
    }
  }
  return i0;
}

void convert_f64_f32(const double* src, sidx n, float* dst) {
  sidx i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_ps(dst + i, _mm256_cvtpd_ps(_mm256_loadu_pd(src + i)));
    _mm_storeu_ps(dst + i + 4, _mm256_cvtpd_ps(_mm256_loadu_pd(src + i + 4)));
  }
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

bool convert_f64_f32_finite(const double* src, sidx n, float* dst) {
  __m128 acc = _mm_setzero_ps();
  sidx i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128 a = _mm256_cvtpd_ps(_mm256_loadu_pd(src + i));
    const __m128 b = _mm256_cvtpd_ps(_mm256_loadu_pd(src + i + 4));
    acc = _mm_add_ps(acc, _mm_add_ps(_mm_sub_ps(a, a), _mm_sub_ps(b, b)));
    _mm_storeu_ps(dst + i, a);
    _mm_storeu_ps(dst + i + 4, b);
  }
  bool ok = _mm_movemask_ps(_mm_cmpunord_ps(acc, acc)) == 0;
  for (; i < n; ++i) {
    const float y = static_cast<float>(src[i]);
    ok = ok && y - y == 0;
    dst[i] = y;
  }
  return ok;
}

void convert_f32_f64(const float* src, sidx n, double* dst) {
  sidx i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_pd(dst + i, _mm256_cvtps_pd(_mm_loadu_ps(src + i)));
    _mm256_storeu_pd(dst + i + 4, _mm256_cvtps_pd(_mm_loadu_ps(src + i + 4)));
  }
  for (; i < n; ++i) dst[i] = static_cast<double>(src[i]);
}

float softmax_run_f32(const float* x, sidx n, float scale, float m_old, float* m_new, float* p) {
  const float neg_inf = -__builtin_inff();
  // pass 1: p = scale * x (rounded, stored) and its maximum
  const __m256 vs = _mm256_set1_ps(scale);
  __m256 vmax = _mm256_set1_ps(neg_inf);
  sidx j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + j), vs);
    _mm256_storeu_ps(p + j, y);
    vmax = _mm256_max_ps(vmax, y);
  }
  float mx = neg_inf;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  for (float v : lanes) mx = mx < v ? v : mx;
  for (; j < n; ++j) {
    p[j] = x[j] * scale;
    mx = mx < p[j] ? p[j] : mx;
  }
  const float m = m_old < mx ? mx : m_old;
  *m_new = m;
  if (m == neg_inf) return 0.0f;
  // pass 2: p = exp(p - m) and the sum
  const __m256 vm = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  for (j = 0; j + 8 <= n; j += 8) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(p + j), vm));
    _mm256_storeu_ps(p + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (j < n) {  // the tail through one masked vector (masked-off lanes add 0)
    const __m256i mask = lane_mask(n - j);
    const __m256 yv = _mm256_maskload_ps(p + j, mask);
    const __m256 e = _mm256_and_ps(exp_nonpositive(_mm256_sub_ps(yv, vm)), _mm256_castsi256_ps(mask));
    _mm256_maskstore_ps(p + j, mask, e);
    acc = _mm256_add_ps(acc, e);
  }
  _mm256_store_ps(lanes, acc);
  // fixed summation order: lanes in pairs, then the halves
  return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) +
         ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
}

void exp_from_lse_f32(float* p, sidx n, float scale, float L) {
  // two passes, the scaled logits stored in between: never contracted into
  // one fused multiply-add
  const __m256 vs = _mm256_set1_ps(scale), vl = _mm256_set1_ps(L);
  sidx j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(p + j, _mm256_mul_ps(_mm256_loadu_ps(p + j), vs));
  for (sidx i = j; i < n; ++i) p[i] *= scale;
  for (j = 0; j + 8 <= n; j += 8)
    _mm256_storeu_ps(p + j, exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(p + j), vl)));
  if (j < n) {
    const __m256i mask = lane_mask(n - j);
    _mm256_maskstore_ps(p + j, mask, exp_nonpositive(_mm256_sub_ps(_mm256_maskload_ps(p + j, mask), vl)));
  }
}

void softmax_grad_f32(const float* p, float* dp, sidx n, float D) {
  const __m256 vd = _mm256_set1_ps(D);
  sidx j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(dp + j, _mm256_mul_ps(_mm256_loadu_ps(p + j),
                                           _mm256_sub_ps(_mm256_loadu_ps(dp + j), vd)));
  for (; j < n; ++j) dp[j] = p[j] * (dp[j] - D);
}

void transpose_block_f32(const float* in, sidx ldi, sidx rows, sidx cols, float* out, sidx ldo) {
  sidx r0 = 0;
  for (; r0 + 8 <= rows; r0 += 8) {
    sidx c0 = 0;
    for (; c0 + 8 <= cols; c0 += 8) {
      __m256 v[8];
      for (int k = 0; k < 8; ++k) v[k] = _mm256_loadu_ps(in + (r0 + k) * ldi + c0);
      transpose8(v);
      for (int k = 0; k < 8; ++k) _mm256_storeu_ps(out + (c0 + k) * ldo + r0, v[k]);
    }
    for (sidx r = r0; r < r0 + 8; ++r)
      for (sidx c = c0; c < cols; ++c) out[c * ldo + r] = in[r * ldi + c];
  }
  for (sidx r = r0; r < rows; ++r)
    for (sidx c = 0; c < cols; ++c) out[c * ldo + r] = in[r * ldi + c];
}

void store_transposed_f32(const float* const* rows, sidx m, sidx W, sidx ld, float* o) {
  sidx j = 0;
  for (; j + 8 <= m; j += 8) {
    sidx w = 0;
    for (; w + 8 <= W; w += 8) {
      __m256 r[8];
      for (int c = 0; c < 8; ++c) r[c] = _mm256_loadu_ps(rows[j + c] + w);
      transpose8(r);
      for (int c = 0; c < 8; ++c) _mm256_storeu_ps(o + (w + c) * ld + j, r[c]);
    }
    for (; w < W; ++w)
      for (sidx c = 0; c < 8; ++c) o[w * ld + j + c] = rows[j + c][w];
  }
  for (sidx w = 0; w < W; ++w)
    for (sidx c = j; c < m; ++c) o[w * ld + c] = rows[c][w];
}

}  // namespace avx2
}  // namespace mh

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#else  // !MH_AVX2_KERNELS

// Without the kernels, cpu_dispatch.h never chooses them; these definitions
// only satisfy the linker (a portable unit: nothing here is AVX2).
#include <stdexcept>

namespace mh {
namespace avx2 {

namespace {
[[noreturn]] void absent() { throw std::logic_error("multihead core: no AVX2 kernels in this build"); }
}  // namespace

void tile_gemm_f32(sidx, sidx, sidx, const float*, sidx, sidx, const float*, sidx, float*, sidx,
                   bool) { absent(); }
sidx gemm_scratch_floats() { return 1; }
void gemm_f32(sidx, sidx, sidx, const float*, sidx, sidx, const float*, sidx, sidx, float*, sidx,
              bool, float*) { absent(); }
void packed_multiply_f32(const float*, sidx, const float*, sidx, sidx, const float*,
                         float* const*, const sidx*) { absent(); }
bool pack_full_panels_f64(const double*, sidx, sidx, sidx, sidx, float*, bool) { absent(); }
void pack_panel_rows_f32(const float* const*, sidx, float*) { absent(); }
sidx store_columns_f32(const float*, sidx, sidx, const sidx*, double*, sidx) { absent(); }
void convert_f64_f32(const double*, sidx, float*) { absent(); }
bool convert_f64_f32_finite(const double*, sidx, float*) { absent(); }
void convert_f32_f64(const float*, sidx, double*) { absent(); }
float softmax_run_f32(const float*, sidx, float, float, float*, float*) { absent(); }
void exp_from_lse_f32(float*, sidx, float, float) { absent(); }
void softmax_grad_f32(const float*, float*, sidx, float) { absent(); }
void transpose_block_f32(const float*, sidx, sidx, sidx, float*, sidx) { absent(); }
void store_transposed_f32(const float* const*, sidx, sidx, sidx, float*) { absent(); }

}  // namespace avx2
}  // namespace mh

#endif  // MH_AVX2_KERNELS
