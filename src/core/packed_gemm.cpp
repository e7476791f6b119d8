// The packed float GEMM: see packed_gemm.h.
#include "packed_gemm.h"

#ifdef __AVX__
#include <immintrin.h>
#endif

namespace mh {

PackedWeights pack_weights(const float* w, idx in, idx out) {
  PackedWeights pw;
  pw.in = in;
  pw.out = out;
  const idx strips = (out + kStrip - 1) / kStrip;
  pw.data.assign(static_cast<size_t>(strips * in * kStrip), 0.0f);
  for (idx s = 0; s < strips; ++s) {
    const idx j0 = s * kStrip, nj = std::min(kStrip, out - j0);
    for (idx f = 0; f < in; ++f)
      std::copy(w + f * out + j0, w + f * out + j0 + nj, pw.data.data() + (s * in + f) * kStrip);
  }
  return pw;
}

idx packed_row_block(idx in, idx out) { return in + out <= 512 ? 512 : 128; }

idx packed_scratch_floats(idx nr, idx in, idx out) {
  return (nr + kPanelRows - 1) / kPanelRows * kPanelRows * in + nr * out;
}

namespace {

#ifdef __AVX__
// The full panels of G consecutive columns of x (src: column f's rows from
// r0, columns ldx apart) into a: each panel's 6 x G values are stored
// together (6 G consecutive floats at dst + q * step), and the G columns are
// read as G sequential streams. Non-finite converted values (NA, NaN, Inf,
// or a double beyond float's range) make *acc NaN when `check`.
template <int G>
inline void pack_column_group(const double* src, idx ldx, idx full_panels, idx step, float* dst,
                              bool check, __m128* acc) {
  for (idx q = 0; q < full_panels; ++q) {
    float* d = dst + q * step;
    const double* s = src + q * kPanelRows;
    for (int c = 0; c < G; ++c) {
      const __m128 f4 = _mm256_cvtpd_ps(_mm256_loadu_pd(s + c * ldx));
      const __m128 f2 = _mm_cvtpd_ps(_mm_loadu_pd(s + c * ldx + 4));  // 2 values, then zeros
      if (check) *acc = _mm_add_ps(*acc, _mm_add_ps(_mm_sub_ps(f4, f4), _mm_sub_ps(f2, f2)));
      _mm_storeu_ps(d + c * kPanelRows, f4);
      _mm_storel_pi(reinterpret_cast<__m64*>(d + c * kPanelRows + 4), f2);
    }
  }
}
#endif

}  // namespace

// The columns of x are R's, often a power of two of bytes apart: they are
// read eight at a time (eight sequential streams, each cache line used whole
// before it leaves the L1 cache) with the panels filled 48 values at a time.
bool pack_panels(const double* x, idx ldx, idx r0, idx nr, idx in, float* a, bool check) {
  const idx panels = (nr + kPanelRows - 1) / kPanelRows;
  const idx step = in * kPanelRows;  // from one panel to the next
  idx full = 0;  // panels filled by the vector loop
  bool ok = true;
#ifdef __AVX__
  full = nr / kPanelRows;
  __m128 acc = _mm_setzero_ps();
  idx f = 0;
  for (; f + 8 <= in; f += 8)
    pack_column_group<8>(x + f * ldx + r0, ldx, full, step, a + f * kPanelRows, check, &acc);
  for (; f < in; ++f)
    pack_column_group<1>(x + f * ldx + r0, ldx, full, step, a + f * kPanelRows, check, &acc);
  if (check) ok = _mm_movemask_ps(_mm_cmpunord_ps(acc, acc)) == 0;
#endif
  for (idx f = 0; f < in; ++f) {  // the rest: the last, partial panel
    const double* src = x + f * ldx + r0;
    float* dst = a + f * kPanelRows;
    for (idx q = full; q < panels; ++q) {
      for (idx i = 0; i < kPanelRows; ++i) {
        const idx r = q * kPanelRows + i;
        const float v = static_cast<float>(r < nr ? src[r] : 0.0);
        if (check) ok = ok && v - v == 0;
        dst[q * step + i] = v;
      }
    }
  }
  return ok;
}

void pack_panels_gather(const float* x, const idx* x_row, idx r0, idx nr, idx in, float* a) {
  const idx panels = (nr + kPanelRows - 1) / kPanelRows;
  for (idx q = 0; q < panels; ++q) {
    float* dst = a + q * in * kPanelRows;
    const float* src[kPanelRows];  // the panel's rows; null past nr (zeros)
    for (idx i = 0; i < kPanelRows; ++i) {
      const idx r = q * kPanelRows + i;
      src[i] = r < nr ? x + x_row[r0 + r] * in : nullptr;
    }
    idx f = 0;
#ifdef MH_TILE_GEMM_AVX2
    // 8 features at a time: the 6 rows' runs (and 2 zero rows) transposed in
    // registers, each feature's 6 values stored together
    for (; f + 8 <= in; f += 8) {
      __m256 v[8];
      for (idx i = 0; i < kPanelRows; ++i) v[i] = src[i] ? _mm256_loadu_ps(src[i] + f) : _mm256_setzero_ps();
      v[6] = v[7] = _mm256_setzero_ps();
      detail::transpose8(v);  // v[c]: feature f + c of rows 0 .. 5, then 2 zeros
      for (int c = 0; c < 8; ++c) {
        float* d = dst + (f + c) * kPanelRows;
        _mm_storeu_ps(d, _mm256_castps256_ps128(v[c]));
        _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(v[c], 1));
      }
    }
#endif
    for (; f < in; ++f)
      for (idx i = 0; i < kPanelRows; ++i) dst[f * kPanelRows + i] = src[i] ? src[i][f] : 0.0f;
  }
}

void packed_multiply(const float* a, idx nr, const PackedWeights& w, const float* b, float* y) {
  const idx out = w.out;
  packed_multiply_to(a, nr, w, b, [y, out](idx i, idx s) { return y + i * out + s * kStrip; });
}

float* packed_projection_block(const double* x, idx ldx, idx r0, idx nr, const PackedWeights& w,
                               const float* b, float* scratch, bool check, bool* ok) {
  const idx panels = (nr + kPanelRows - 1) / kPanelRows;
  float* a = scratch;
  float* y = scratch + panels * kPanelRows * w.in;
  *ok = pack_panels(x, ldx, r0, nr, w.in, a, check);
  packed_multiply(a, nr, w, b, y);
  return y;
}

void store_columns(const float* y, idx nr, idx out, const idx* y_col, double* dst, idx ldy) {
  auto col = [&](idx j) { return dst + (y_col ? y_col[j] : j) * ldy; };
  idx i0 = 0;
#ifdef MH_TILE_GEMM_AVX2
  for (; i0 + 8 <= nr; i0 += 8) {
    idx j0 = 0;
    for (; j0 + 8 <= out; j0 += 8) {
      __m256 r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(y + (i0 + k) * out + j0);
      detail::transpose8(r);  // r[c]: column j0 + c, rows i0 .. i0 + 7
      for (int c = 0; c < 8; ++c) {
        double* d = col(j0 + c) + i0;
        _mm256_storeu_pd(d, _mm256_cvtps_pd(_mm256_castps256_ps128(r[c])));
        _mm256_storeu_pd(d + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(r[c], 1)));
      }
    }
    for (; j0 < out; ++j0)
      for (idx i = i0; i < i0 + 8; ++i) col(j0)[i] = static_cast<double>(y[i * out + j0]);
  }
#endif
  for (idx j = 0; j < out; ++j)
    for (idx i = i0; i < nr; ++i) col(j)[i] = static_cast<double>(y[i * out + j]);
}

}  // namespace mh
