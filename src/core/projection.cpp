// Projection layers: see projection.h. The GEMMs are the dense.h routines;
// the periodic bias sums own disjoint column bands, so results do not depend
// on the thread count.
#include "projection.h"

#include <algorithm>
#include <stdexcept>

#include "dense.h"
#include "parallel.h"

namespace mh {

namespace {

constexpr idx kBand = 256;

long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

}  // namespace

template <class T>
void add_periodic(T* y, idx n, const T* bias, idx period, int threads) {
  if (period <= 0 || n % period != 0) throw std::invalid_argument("bias period must divide the output size");
  const idx reps = n / period;
  const int used = threads_for_elements(static_cast<double>(n), threads);
  parallel_for(n_blocks(period, kBand), used, [&](long blk) {
    const idx j0 = blk * kBand, j1 = std::min(period, j0 + kBand);
    for (idx r = 0; r < reps; ++r) {
      T* yr = y + r * period;
      for (idx j = j0; j < j1; ++j) yr[j] += bias[j];
    }
  });
}

template <class T>
void sum_periodic(const T* dy, idx n, idx period, T* out, int threads) {
  if (period <= 0 || n % period != 0) throw std::invalid_argument("bias period must divide the output size");
  const idx reps = n / period;
  const int used = threads_for_elements(static_cast<double>(n), threads);
  parallel_for(n_blocks(period, kBand), used, [&](long blk) {
    const idx j0 = blk * kBand, j1 = std::min(period, j0 + kBand);
    std::fill(out + j0, out + j1, T(0));
    for (idx r = 0; r < reps; ++r) {
      const T* dr = dy + r * period;
      for (idx j = j0; j < j1; ++j) out[j] += dr[j];
    }
  });
}

template <class T>
void projection_forward(const T* x, idx rows, idx in, const T* w, idx out, const T* bias,
                        idx period, Activation act, T* y, T* saved, int threads) {
  const bool column_bias = bias && period == out;
  dense_forward(x, rows, in, w, column_bias ? bias : nullptr, out, y, threads);
  const idx n = rows * out;
  if (bias && !column_bias) add_periodic(y, n, bias, period, threads);
  if (act == Activation::Linear) return;
  const bool save_output = activation_backward_uses_output(act);
  if (saved && !save_output) std::copy(y, y + n, saved);
  activation_forward(act, y, rows, out, y, threads);
  if (saved && save_output) std::copy(y, y + n, saved);
}

template <class T>
void projection_backward(const T* x, idx rows, idx in, const T* w, idx out, idx period,
                         Activation act, const T* saved, const T* dy, T* dx, T* dw, T* dbias,
                         int threads) {
  const idx n = rows * out;
  const T* dz = dy;
  Buffer<T> dz_own;
  if (act != Activation::Linear) {
    if (!saved) throw std::invalid_argument("projection_backward: the activation needs saved values");
    dz_own.resize(static_cast<size_t>(n));
    activation_backward(act, saved, dy, rows, out, dz_own.data(), threads);
    dz = dz_own.data();
  }
  dense_backward_input(dz, rows, out, w, in, dx, false, threads);
  dense_backward_weights(x, dz, rows, in, out, dw, static_cast<T*>(nullptr), threads);
  if (dbias) sum_periodic(dz, n, period, dbias, threads);
}

#define MH_INSTANTIATE_PROJECTION(T)                                                             \
  template void projection_forward<T>(const T*, idx, idx, const T*, idx, const T*, idx,         \
                                      Activation, T*, T*, int);                                  \
  template void projection_backward<T>(const T*, idx, idx, const T*, idx, idx, Activation,      \
                                       const T*, const T*, T*, T*, T*, int);                     \
  template void add_periodic<T>(T*, idx, const T*, idx, int);                                    \
  template void sum_periodic<T>(const T*, idx, idx, T*, int);

MH_INSTANTIATE_PROJECTION(float)
MH_INSTANTIATE_PROJECTION(double)

}  // namespace mh
