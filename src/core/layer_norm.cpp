// Layer normalization: see layer_norm.h. Rows are independent (parallel over
// fixed row blocks); the gamma/beta gradients are parallel over fixed bands
// of features, each summing over all rows in order, so results do not depend
// on the thread count.
#include "layer_norm.h"

#include <algorithm>
#include <cmath>

#include "parallel.h"

namespace mh {

namespace {

constexpr idx kRowBlock = 64;
constexpr idx kBand = 64;

long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

int threads_for(idx work, int threads) { return threads_for_elements(static_cast<double>(work), threads); }

// mean and 1 / sqrt(var + eps) of one row.
template <class T>
void row_stats(const T* xr, idx n, double epsilon, double* mean, double* rstd) {
  double s = 0;
  for (idx j = 0; j < n; ++j) s += xr[j];
  const double m = s / static_cast<double>(n);
  double v = 0;
  for (idx j = 0; j < n; ++j) {
    const double d = xr[j] - m;
    v += d * d;
  }
  *mean = m;
  *rstd = 1.0 / std::sqrt(v / static_cast<double>(n) + epsilon);
}

}  // namespace

template <class T>
void layer_norm_forward(const T* x, idx rows, idx n, const T* gamma, const T* beta,
                        double epsilon, T* y, int threads) {
  parallel_for(n_blocks(rows, kRowBlock), threads_for(rows * n, threads), [&](long blk) {
    const idx r0 = blk * kRowBlock, r1 = std::min(rows, r0 + kRowBlock);
    for (idx r = r0; r < r1; ++r) {
      const T* xr = x + r * n;
      T* yr = y + r * n;
      double m, s;
      row_stats(xr, n, epsilon, &m, &s);
      const T mean = static_cast<T>(m), rstd = static_cast<T>(s);
      for (idx j = 0; j < n; ++j) {
        T v = (xr[j] - mean) * rstd;
        if (gamma) v *= gamma[j];
        if (beta) v += beta[j];
        yr[j] = v;
      }
    }
  });
}

template <class T>
void layer_norm_backward(const T* x, idx rows, idx n, const T* gamma, double epsilon,
                         const T* dy, T* dx, T* dgamma, T* dbeta, int threads) {
  const int used = threads_for(rows * n, threads);
  Buffer<T> mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
  parallel_for(n_blocks(rows, kRowBlock), used, [&](long blk) {
    const idx r0 = blk * kRowBlock, r1 = std::min(rows, r0 + kRowBlock);
    for (idx r = r0; r < r1; ++r) {
      const T* xr = x + r * n;
      const T* gr = dy + r * n;
      T* dr = dx + r * n;
      double m, s;
      row_stats(xr, n, epsilon, &m, &s);
      mean[r] = static_cast<T>(m);
      rstd[r] = static_cast<T>(s);
      double sum_g = 0, sum_gx = 0;
      for (idx j = 0; j < n; ++j) {
        const double g = gamma ? gr[j] * gamma[j] : gr[j];
        const double xhat = (xr[j] - mean[r]) * rstd[r];
        sum_g += g;
        sum_gx += g * xhat;
      }
      const T mg = static_cast<T>(sum_g / n), mgx = static_cast<T>(sum_gx / n);
      for (idx j = 0; j < n; ++j) {
        const T g = gamma ? gr[j] * gamma[j] : gr[j];
        const T xhat = (xr[j] - mean[r]) * rstd[r];
        dr[j] = rstd[r] * (g - mg - xhat * mgx);
      }
    }
  });
  if (!dgamma && !dbeta) return;
  parallel_for(n_blocks(n, kBand), used, [&](long blk) {
    const idx j0 = blk * kBand, j1 = std::min(n, j0 + kBand);
    if (dgamma) std::fill(dgamma + j0, dgamma + j1, T(0));
    if (dbeta) std::fill(dbeta + j0, dbeta + j1, T(0));
    for (idx r = 0; r < rows; ++r) {
      const T* xr = x + r * n;
      const T* gr = dy + r * n;
      for (idx j = j0; j < j1; ++j) {
        if (dgamma) dgamma[j] += gr[j] * ((xr[j] - mean[r]) * rstd[r]);
        if (dbeta) dbeta[j] += gr[j];
      }
    }
  });
}

#define MH_INSTANTIATE_LAYER_NORM(T)                                                          \
  template void layer_norm_forward<T>(const T*, idx, idx, const T*, const T*, double, T*, int); \
  template void layer_norm_backward<T>(const T*, idx, idx, const T*, double, const T*, T*, T*, \
                                       T*, int);

MH_INSTANTIATE_LAYER_NORM(float)
MH_INSTANTIATE_LAYER_NORM(double)

}  // namespace mh
