// The packed float GEMM: see packed_gemm.h. The AVX2 + FMA kernels
// themselves are in simd_avx2.cpp (simd_kernels.h); this unit is portable.
#include "packed_gemm.h"

#include <Eigen/Dense>
#include <algorithm>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "simd_kernels.h"

namespace mh {

namespace {

void require_avx2() {
  if (!use_avx2()) throw std::logic_error("multihead core: the packed projection needs AVX2 + FMA");
}

}  // namespace

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

// The columns of x are R's, often a power of two of bytes apart: the full
// panels are read eight columns at a time (eight sequential streams, each
// cache line used whole before it leaves the L1 cache) with the panels
// filled 48 values at a time (simd_kernels.h); the last, partial panel here.
bool pack_panels(const double* x, idx ldx, idx r0, idx nr, idx in, float* a, bool check) {
  require_avx2();
  const idx panels = (nr + kPanelRows - 1) / kPanelRows;
  const idx step = in * kPanelRows;  // from one panel to the next
  const idx full = nr / kPanelRows;
  bool ok = avx2::pack_full_panels_f64(x, ldx, r0, nr, in, a, check);
  for (idx f = 0; f < in; ++f) {
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
  require_avx2();
  const idx panels = (nr + kPanelRows - 1) / kPanelRows;
  for (idx q = 0; q < panels; ++q) {
    const float* src[kPanelRows];  // the panel's rows; null past nr (zeros)
    for (idx i = 0; i < kPanelRows; ++i) {
      const idx r = q * kPanelRows + i;
      src[i] = r < nr ? x + x_row[r0 + r] * in : nullptr;
    }
    avx2::pack_panel_rows_f32(src, in, a + q * in * kPanelRows);
  }
}

void packed_multiply_rows(const float* a, idx nr, const PackedWeights& w, const float* b,
                          float* const* rows, const idx* strip_off) {
  require_avx2();
  avx2::packed_multiply_f32(a, nr, w.data.data(), w.in, w.out, b, rows, strip_off);
}

void packed_multiply(const float* a, idx nr, const PackedWeights& w, const float* b, float* y) {
  std::vector<float*> rows(static_cast<size_t>(nr));
  for (idx i = 0; i < nr; ++i) rows[static_cast<size_t>(i)] = y + i * w.out;
  packed_multiply_rows(a, nr, w, b, rows.data(), nullptr);
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
  require_avx2();
  const idx i0 = avx2::store_columns_f32(y, nr, out, y_col, dst, ldy);
  for (idx j = 0; j < out; ++j) {
    double* d = dst + (y_col ? y_col[j] : j) * ldy;
    for (idx i = i0; i < nr; ++i) d[i] = static_cast<double>(y[i * out + j]);
  }
}

template <class T>
void gemm(idx M, idx N, idx K, const T* a, idx a_rs, idx a_cs, const T* b, idx b_rs, idx b_cs,
          T* c, idx ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (std::is_same<T, float>::value && use_avx2()) {
    // the packing scratch of this thread, allocated once
    thread_local std::vector<float> scratch;
    const size_t need = static_cast<size_t>(avx2::gemm_scratch_floats());
    if (scratch.size() < need) scratch.resize(need);
    avx2::gemm_f32(M, N, K, reinterpret_cast<const float*>(a), a_rs, a_cs,
                   reinterpret_cast<const float*>(b), b_rs, b_cs, reinterpret_cast<float*>(c),
                   ldc, accumulate, scratch.data());
    return;
  }
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Strides = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  Eigen::Map<const RowMat, 0, Strides> A(a, M, K, Strides(a_rs, a_cs));
  Eigen::Map<const RowMat, 0, Strides> B(b, K, N, Strides(b_rs, b_cs));
  Eigen::Map<RowMat, 0, Eigen::OuterStride<>> C(c, M, N, Eigen::OuterStride<>(ldc));
  if (accumulate) {
    C.noalias() += A * B;
  } else {
    C.noalias() = A * B;
  }
}

template void gemm<float>(idx, idx, idx, const float*, idx, idx, const float*, idx, idx, float*,
                          idx, bool);
template void gemm<double>(idx, idx, idx, const double*, idx, idx, const double*, idx, idx,
                           double*, idx, bool);

}  // namespace mh
