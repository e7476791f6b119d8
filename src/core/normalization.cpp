// RMS and unit normalization: see normalization.h. Rows are independent
// (parallel over fixed row blocks); the scale gradient is parallel over fixed
// bands of features, each summing over all rows in order, so results do not
// depend on the thread count.
#include "normalization.h"

#include <algorithm>
#include <cmath>

#include "parallel.h"

namespace mh {

namespace {

constexpr idx kRowBlock = 64;
constexpr idx kBand = 64;

long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

int threads_for(idx work, int threads) { return threads_for_elements(static_cast<double>(work), threads); }

template <class T>
double sum_squares(const T* xr, idx n) {
  double s = 0;
  for (idx j = 0; j < n; ++j) s += static_cast<double>(xr[j]) * xr[j];
  return s;
}

double rms_factor(double ss, idx n, double epsilon) {
  return 1.0 / std::sqrt(ss / static_cast<double>(n) + epsilon);
}

// The unit normalization's factor; *capped tells whether the cap binds.
double unit_factor(double ss, double epsilon, bool* capped) {
  const double r = 1.0 / std::sqrt(ss), cap = 1.0 / epsilon;
  *capped = !(r <= cap);
  return *capped ? cap : r;
}

// body(r) for every row, in parallel over fixed row blocks.
template <class F>
void for_rows(idx rows, idx n, int threads, F body) {
  parallel_for(n_blocks(rows, kRowBlock), threads_for(rows * n, threads), [&](long blk) {
    const idx r0 = blk * kRowBlock, r1 = std::min(rows, r0 + kRowBlock);
    for (idx r = r0; r < r1; ++r) body(r);
  });
}

}  // namespace

template <class T>
void rms_norm_forward(const T* x, idx rows, idx n, const T* scale, double epsilon, T* y,
                      int threads) {
  for_rows(rows, n, threads, [&](idx r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const T f = static_cast<T>(rms_factor(sum_squares(xr, n), n, epsilon));
    for (idx j = 0; j < n; ++j) yr[j] = scale ? (xr[j] * f) * scale[j] : xr[j] * f;
  });
}

template <class T>
void rms_norm_backward(const T* x, idx rows, idx n, const T* scale, double epsilon, const T* dy,
                       T* dx, T* dscale, int threads) {
  Buffer<T> factor(static_cast<size_t>(rows));
  for_rows(rows, n, threads, [&](idx r) {
    const T* xr = x + r * n;
    const T* gr = dy + r * n;
    T* dr = dx + r * n;
    const double f = rms_factor(sum_squares(xr, n), n, epsilon);
    factor[r] = static_cast<T>(f);
    double gx = 0;
    for (idx j = 0; j < n; ++j) gx += static_cast<double>(scale ? gr[j] * scale[j] : gr[j]) * xr[j];
    const T a = static_cast<T>(f), c = static_cast<T>(f * f * f * gx / static_cast<double>(n));
    for (idx j = 0; j < n; ++j) {
      const T g = scale ? gr[j] * scale[j] : gr[j];
      dr[j] = a * g - c * xr[j];
    }
  });
  if (!dscale) return;
  parallel_for(n_blocks(n, kBand), threads_for(rows * n, threads), [&](long blk) {
    const idx j0 = blk * kBand, j1 = std::min(n, j0 + kBand);
    std::fill(dscale + j0, dscale + j1, T(0));
    for (idx r = 0; r < rows; ++r) {
      const T* xr = x + r * n;
      const T* gr = dy + r * n;
      for (idx j = j0; j < j1; ++j) dscale[j] += gr[j] * (xr[j] * factor[r]);
    }
  });
}

template <class T>
void unit_norm_forward(const T* x, idx rows, idx n, double epsilon, T* y, int threads) {
  for_rows(rows, n, threads, [&](idx r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    bool capped;
    const T f = static_cast<T>(unit_factor(sum_squares(xr, n), epsilon, &capped));
    for (idx j = 0; j < n; ++j) yr[j] = xr[j] * f;
  });
}

template <class T>
void unit_norm_backward(const T* x, idx rows, idx n, double epsilon, const T* dy, T* dx,
                        int threads) {
  for_rows(rows, n, threads, [&](idx r) {
    const T* xr = x + r * n;
    const T* gr = dy + r * n;
    T* dr = dx + r * n;
    bool capped;
    const double f = unit_factor(sum_squares(xr, n), epsilon, &capped);
    const T a = static_cast<T>(f);
    if (capped) {
      for (idx j = 0; j < n; ++j) dr[j] = gr[j] * a;
      return;
    }
    double gx = 0;
    for (idx j = 0; j < n; ++j) gx += static_cast<double>(gr[j]) * xr[j];
    const T c = static_cast<T>(f * f * f * gx);
    for (idx j = 0; j < n; ++j) dr[j] = a * gr[j] - c * xr[j];
  });
}

#define MH_INSTANTIATE_NORMALIZATION(T)                                                       \
  template void rms_norm_forward<T>(const T*, idx, idx, const T*, double, T*, int);           \
  template void rms_norm_backward<T>(const T*, idx, idx, const T*, double, const T*, T*, T*,  \
                                     int);                                                    \
  template void unit_norm_forward<T>(const T*, idx, idx, double, T*, int);                    \
  template void unit_norm_backward<T>(const T*, idx, idx, double, const T*, T*, int);

MH_INSTANTIATE_NORMALIZATION(float)
MH_INSTANTIATE_NORMALIZATION(double)

}  // namespace mh
