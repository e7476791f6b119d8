// 1D convolution: see conv1d.h.
//
// Work split (a function of the shapes only, so results do not depend on the
// thread count):
//   forward  blocks of `tile` output rows of the flattened (B * Lout, F)
//            output; each block gathers its windows into an im2col scratch
//            (rows, K * Cg) per group and multiplies by that group's kernel
//            columns (K * Cg, Fg).
//   dw, db   at most kWeightGroups groups of consecutive row blocks, each
//            with its own partial sums (dW_g += col^T dY_g), added in group
//            order afterwards.
//   dx       tasks of (batch, run of input steps): each recomputes
//            dcol = dY_g W_g^T for the output rows whose windows reach its
//            steps and adds them (rows in increasing order) into its own
//            steps only, so no two tasks write the same element.
#include "conv1d.h"

#include <Eigen/Dense>
#include <algorithm>
#include <stdexcept>
#include <string>

#include "parallel.h"

namespace mh {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using StridedMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstStridedMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

// At most this many partial weight gradients.
constexpr long kWeightGroups = 8;
// Elements of partial weight gradients allowed in all (fewer groups above).
constexpr idx kMaxPartialElements = idx(1) << 24;

long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

// floor(a / b) for b > 0 and any sign of a.
idx floor_div(idx a, idx b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Output rows per block: an im2col scratch of about 2^16 elements, between
// 16 and 256 rows.
idx row_tile(idx window) { return std::clamp<idx>((idx(1) << 16) / std::max<idx>(window, 1), 16, 256); }

// Writes the windows of output rows r0 .. r0 + nr - 1 (flattened b * Lout + t)
// for group g into col (nr, K * Cg), zeros where a window leaves the input.
template <class T>
void im2col(const T* x, const Conv1dShape& s, idx r0, idx nr, idx g, T* col) {
  const idx Cg = s.channels / s.groups, width = s.kernel * Cg;
  for (idx i = 0; i < nr; ++i) {
    const idx r = r0 + i, b = r / s.out_steps, t = r % s.out_steps;
    T* row = col + i * width;
    for (idx k = 0; k < s.kernel; ++k) {
      const idx p = t * s.stride + k * s.dilation - s.pad_left;
      T* dst = row + k * Cg;
      if (p < 0 || p >= s.steps) {
        std::fill(dst, dst + Cg, T(0));
      } else {
        const T* src = x + (b * s.steps + p) * s.channels + g * Cg;
        std::copy(src, src + Cg, dst);
      }
    }
  }
}

}  // namespace

Conv1dShape conv1d_shape(idx batch, idx steps, idx channels, idx filters, idx kernel, idx stride,
                         idx dilation, idx groups, Conv1dPadding padding) {
  if (batch < 0 || steps < 0 || channels < 1 || filters < 1 || kernel < 1 || stride < 1 ||
      dilation < 1 || groups < 1) {
    throw std::invalid_argument("conv1d: sizes must be positive");
  }
  if (channels % groups != 0 || filters % groups != 0) {
    throw std::invalid_argument("conv1d: groups must divide the channels and the filters");
  }
  if (kernel - 1 > (kMaxElements - 1) / dilation) throw std::invalid_argument("conv1d: window too long");
  Conv1dShape s;
  s.batch = batch;
  s.steps = steps;
  s.channels = channels;
  s.filters = filters;
  s.kernel = kernel;
  s.stride = stride;
  s.dilation = dilation;
  s.groups = groups;
  const idx span = (kernel - 1) * dilation + 1;
  switch (padding) {
    case Conv1dPadding::Valid:
      if (steps < span) throw std::invalid_argument("conv1d: the window is longer than the input");
      s.pad_left = 0;
      s.out_steps = (steps - span) / stride + 1;
      break;
    case Conv1dPadding::Same: {
      s.out_steps = (steps + stride - 1) / stride;
      const idx total = std::max<idx>((s.out_steps - 1) * stride + span - steps, 0);
      s.pad_left = total / 2;
      break;
    }
    case Conv1dPadding::Causal:
      s.out_steps = (steps + stride - 1) / stride;
      s.pad_left = span - 1;
      break;
    default:
      throw std::invalid_argument("conv1d: unknown padding");
  }
  return s;
}

template <class T>
void conv1d_forward(const T* x, const T* w, const T* bias, const Conv1dShape& s, T* y,
                    int threads) {
  const idx Cg = s.channels / s.groups, Fg = s.filters / s.groups, width = s.kernel * Cg;
  const idx rows = s.batch * s.out_steps, F = s.filters;
  if (rows == 0) return;
  const idx tile = row_tile(width);
  const int used = threads_for_macs(static_cast<double>(rows) * width * F, threads);
  parallel_for(n_blocks(rows, tile), used, [&](long blk) {
    const idx r0 = blk * tile, nr = std::min(tile, rows - r0);
    Buffer<T> col(static_cast<size_t>(nr * width));
    for (idx g = 0; g < s.groups; ++g) {
      im2col(x, s, r0, nr, g, col.data());
      Eigen::Map<const RowMat<T>> C(col.data(), nr, width);
      ConstStridedMap<T> W(w + g * Fg, width, Fg, Eigen::OuterStride<>(F));
      StridedMap<T> Y(y + r0 * F + g * Fg, nr, Fg, Eigen::OuterStride<>(F));
      Y.noalias() = C * W;
    }
    if (bias) {
      for (idx i = 0; i < nr; ++i) {
        T* yr = y + (r0 + i) * F;
        for (idx o = 0; o < F; ++o) yr[o] += bias[o];
      }
    }
  });
}

template <class T>
void conv1d_backward(const T* x, const T* w, const T* dy, const Conv1dShape& s, T* dx, T* dw,
                     T* db, int threads) {
  const idx Cg = s.channels / s.groups, Fg = s.filters / s.groups, width = s.kernel * Cg;
  const idx rows = s.batch * s.out_steps, F = s.filters, nw = width * F;
  const idx tile = row_tile(width);
  const int used = threads_for_macs(2.0 * static_cast<double>(rows) * width * F, threads);

  // ---- dw, db: partial sums over groups of row blocks.
  const long nb = n_blocks(rows, tile);
  const long cap = std::max<long>(1, static_cast<long>(kMaxPartialElements / (nw + F)));
  const long wgroups = std::min<long>({nb, kWeightGroups, cap});
  if (wgroups == 0) {
    std::fill(dw, dw + nw, T(0));
    if (db) std::fill(db, db + F, T(0));
  } else {
    Buffer<T> part(static_cast<size_t>(wgroups * (nw + F)));
    parallel_for(wgroups, used, [&](long grp) {
      T* pw = part.data() + grp * (nw + F);
      T* pb = pw + nw;
      std::fill(pw, pw + nw + F, T(0));
      Buffer<T> col(static_cast<size_t>(tile * width));
      const long b0 = grp * nb / wgroups, b1 = (grp + 1) * nb / wgroups;
      for (long blk = b0; blk < b1; ++blk) {
        const idx r0 = blk * tile, nr = std::min(tile, rows - r0);
        for (idx g = 0; g < s.groups; ++g) {
          im2col(x, s, r0, nr, g, col.data());
          Eigen::Map<const RowMat<T>> C(col.data(), nr, width);
          ConstStridedMap<T> dY(dy + r0 * F + g * Fg, nr, Fg, Eigen::OuterStride<>(F));
          StridedMap<T> dW(pw + g * Fg, width, Fg, Eigen::OuterStride<>(F));
          dW.noalias() += C.transpose() * dY;
        }
        for (idx i = 0; i < nr; ++i) {
          const T* gr = dy + (r0 + i) * F;
          for (idx o = 0; o < F; ++o) pb[o] += gr[o];
        }
      }
    });
    // Sum the partials in group order, in bands of the weight elements.
    const idx band = 4096, total = nw + F;
    parallel_for(n_blocks(total, band), threads_for_elements(static_cast<double>(total) * wgroups, threads),
                 [&](long blk) {
      const idx j0 = blk * band, j1 = std::min(total, j0 + band);
      for (idx j = j0; j < j1; ++j) {
        T acc = part[static_cast<size_t>(j)];
        for (long grp = 1; grp < wgroups; ++grp) acc += part[static_cast<size_t>(grp * total + j)];
        if (j < nw) dw[j] = acc;
        else if (db) db[j - nw] = acc;
      }
    });
  }

  // ---- dx: tasks of (batch, run of input steps).
  if (s.batch == 0 || s.steps == 0) return;
  const idx run = std::max<idx>(16, tile * s.stride);
  const long runs = n_blocks(s.steps, run);
  const idx reach = (s.kernel - 1) * s.dilation;
  parallel_for(static_cast<long>(s.batch) * runs, used, [&](long task) {
    const idx b = task / runs, p0 = (task % runs) * run, p1 = std::min(s.steps, p0 + run);
    T* dxb = dx + b * s.steps * s.channels;
    std::fill(dxb + p0 * s.channels, dxb + p1 * s.channels, T(0));
    if (s.out_steps == 0) return;
    // Output rows t whose window t * stride - pad_left + [0, reach] meets [p0, p1).
    const idx t_lo = std::max<idx>(0, -floor_div(-(p0 + s.pad_left - reach), s.stride));
    const idx t_hi = std::min<idx>(s.out_steps - 1, floor_div(p1 - 1 + s.pad_left, s.stride));
    if (t_lo > t_hi) return;
    Buffer<T> dcol(static_cast<size_t>(std::min(tile, t_hi - t_lo + 1) * width));
    for (idx ta = t_lo; ta <= t_hi; ta += tile) {
      const idx nr = std::min(tile, t_hi - ta + 1);
      for (idx g = 0; g < s.groups; ++g) {
        ConstStridedMap<T> dY(dy + (b * s.out_steps + ta) * F + g * Fg, nr, Fg, Eigen::OuterStride<>(F));
        ConstStridedMap<T> W(w + g * Fg, width, Fg, Eigen::OuterStride<>(F));
        Eigen::Map<RowMat<T>> D(dcol.data(), nr, width);
        D.noalias() = dY * W.transpose();
        for (idx i = 0; i < nr; ++i) {
          const idx t = ta + i;
          for (idx k = 0; k < s.kernel; ++k) {
            const idx p = t * s.stride + k * s.dilation - s.pad_left;
            if (p < p0 || p >= p1) continue;
            const T* src = dcol.data() + i * width + k * Cg;
            T* dst = dxb + p * s.channels + g * Cg;
            for (idx c = 0; c < Cg; ++c) dst[c] += src[c];
          }
        }
      }
    }
  });
}

#define MH_INSTANTIATE_CONV1D(T)                                                                \
  template void conv1d_forward<T>(const T*, const T*, const T*, const Conv1dShape&, T*, int);  \
  template void conv1d_backward<T>(const T*, const T*, const T*, const Conv1dShape&, T*, T*, T*, \
                                   int);

MH_INSTANTIATE_CONV1D(float)
MH_INSTANTIATE_CONV1D(double)

}  // namespace mh
