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

// Sum over j in [0, n) of f(j) in double, in a fixed order: eight partial
// sums (j mod 8) combined pairwise. Independent partial sums let the adds
// overlap (one running sum is a chain of n dependent additions); the order
// depends on n only, never on the thread count.
template <class F>
double lane_sum(idx n, F f) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  idx j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int k = 0; k < 8; ++k) a[k] += f(j + k);
  }
  for (int k = 0; j < n; ++j, ++k) a[k] += f(j);
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// mean and 1 / sqrt(var + eps) of one row (two passes: the variance of the
// centred values).
template <class T>
void row_stats(const T* xr, idx n, double epsilon, double* mean, double* rstd) {
  const double m = lane_sum(n, [&](idx j) { return static_cast<double>(xr[j]); }) / static_cast<double>(n);
  const double v = lane_sum(n, [&](idx j) {
    const double d = xr[j] - m;
    return d * d;
  });
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
      if (gamma && beta) {
        for (idx j = 0; j < n; ++j) yr[j] = (xr[j] - mean) * rstd * gamma[j] + beta[j];
      } else if (gamma) {
        for (idx j = 0; j < n; ++j) yr[j] = (xr[j] - mean) * rstd * gamma[j];
      } else if (beta) {
        for (idx j = 0; j < n; ++j) yr[j] = (xr[j] - mean) * rstd + beta[j];
      } else {
        for (idx j = 0; j < n; ++j) yr[j] = (xr[j] - mean) * rstd;
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
      const T mr = mean[r], sr = rstd[r];
      const double sum_g = gamma ? lane_sum(n, [&](idx j) { return static_cast<double>(gr[j] * gamma[j]); })
                                 : lane_sum(n, [&](idx j) { return static_cast<double>(gr[j]); });
      const double sum_gx = gamma ? lane_sum(n, [&](idx j) {
        return static_cast<double>(gr[j] * gamma[j]) * static_cast<double>((xr[j] - mr) * sr);
      }) : lane_sum(n, [&](idx j) { return static_cast<double>(gr[j]) * static_cast<double>((xr[j] - mr) * sr); });
      const T mg = static_cast<T>(sum_g / n), mgx = static_cast<T>(sum_gx / n);
      if (gamma) {
        for (idx j = 0; j < n; ++j) dr[j] = sr * (gr[j] * gamma[j] - mg - ((xr[j] - mr) * sr) * mgx);
      } else {
        for (idx j = 0; j < n; ++j) dr[j] = sr * (gr[j] - mg - ((xr[j] - mr) * sr) * mgx);
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
      const T mr = mean[r], sr = rstd[r];
      if (dgamma) {
        for (idx j = j0; j < j1; ++j) dgamma[j] += gr[j] * ((xr[j] - mr) * sr);
      }
      if (dbeta) {
        for (idx j = j0; j < j1; ++j) dbeta[j] += gr[j];
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
