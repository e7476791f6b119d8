// Pooling over steps: see pooling.h. The global pooling is parallel over
// sequences (each owns its output row); the windowed forward over fixed
// blocks of output rows; the windowed backward over (sequence, band of
// channels), each task owning its whole slice of dx and adding windows in
// increasing order. So results do not depend on the thread count.
#include "pooling.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "parallel.h"

namespace mh {

namespace {

idx count_steps(const int32_t* mask, idx b, idx steps) {
  if (!mask) return steps;
  idx c = 0;
  for (idx t = 0; t < steps; ++t) c += mask[b * steps + t] != 0;
  return c;
}

}  // namespace

template <class T>
void average_steps_forward(const T* x, idx B, idx steps, idx C, const int32_t* mask, T* y,
                           int threads) {
  const int used = threads_for_elements(static_cast<double>(B * steps * C), threads);
  parallel_for(static_cast<long>(B), used, [&](long b) {
    std::vector<double> acc(static_cast<size_t>(C), 0.0);
    const idx count = count_steps(mask, b, steps);
    for (idx t = 0; t < steps; ++t) {
      if (mask && mask[b * steps + t] == 0) continue;
      const T* xr = x + (b * steps + t) * C;
      for (idx c = 0; c < C; ++c) acc[c] += xr[c];
    }
    T* yr = y + b * C;
    for (idx c = 0; c < C; ++c) {
      yr[c] = count > 0 ? static_cast<T>(acc[c] / static_cast<double>(count)) : T(0);
    }
  });
}

template <class T>
void average_steps_backward(const T* dy, idx B, idx steps, idx C, const int32_t* mask, T* dx,
                            int threads) {
  const int used = threads_for_elements(static_cast<double>(B * steps * C), threads);
  parallel_for(static_cast<long>(B), used, [&](long b) {
    const idx count = count_steps(mask, b, steps);
    const T* gr = dy + b * C;
    for (idx t = 0; t < steps; ++t) {
      T* dr = dx + (b * steps + t) * C;
      if (count == 0 || (mask && mask[b * steps + t] == 0)) {
        std::fill(dr, dr + C, T(0));
        continue;
      }
      const T inv = static_cast<T>(1.0 / static_cast<double>(count));
      for (idx c = 0; c < C; ++c) dr[c] = gr[c] * inv;
    }
  });
}

// ---- windowed pooling ------------------------------------------------------

namespace {

constexpr idx kPoolRows = 64;     // output rows per forward task
constexpr idx kPoolBand = 256;    // channels per backward task

long n_blocks(idx n, idx block) { return static_cast<long>((n + block - 1) / block); }

// The steps [*lo, *hi) of window t.
void window(const Pool1dShape& s, idx t, idx* lo, idx* hi) {
  const idx start = t * s.stride - s.pad_left;
  *lo = std::max<idx>(start, 0);
  *hi = std::min<idx>(start + s.pool, s.steps);
}

// body(b, t) for every output row, in parallel over fixed row blocks.
template <class F>
void for_output_rows(const Pool1dShape& s, int threads, F body) {
  const idx rows = s.batch * s.out_steps;
  const int used = threads_for_elements(static_cast<double>(rows) * s.pool * s.channels, threads);
  parallel_for(n_blocks(rows, kPoolRows), used, [&](long blk) {
    const idx r0 = blk * kPoolRows, r1 = std::min(rows, r0 + kPoolRows);
    for (idx r = r0; r < r1; ++r) body(r / s.out_steps, r % s.out_steps);
  });
}

// body(b, c0, c1, dxb) for every (sequence, band of channels) after zeroing
// that slice of dx (dxb: dx of sequence b).
template <class T, class F>
void for_input_bands(const Pool1dShape& s, T* dx, int threads, F body) {
  const long bands = n_blocks(s.channels, kPoolBand);
  const int used = threads_for_elements(static_cast<double>(s.batch) * s.steps * s.channels +
                                        static_cast<double>(s.batch) * s.out_steps * s.pool * s.channels,
                                        threads);
  parallel_for(static_cast<long>(s.batch) * bands, used, [&](long task) {
    const idx b = task / bands, c0 = (task % bands) * kPoolBand,
              c1 = std::min(s.channels, c0 + kPoolBand);
    T* dxb = dx + b * s.steps * s.channels;
    for (idx p = 0; p < s.steps; ++p) std::fill(dxb + p * s.channels + c0, dxb + p * s.channels + c1, T(0));
    body(b, c0, c1, dxb);
  });
}

}  // namespace

Pool1dShape pool1d_shape(idx batch, idx steps, idx channels, idx pool, idx stride, bool same) {
  if (batch < 0 || steps < 0 || channels < 0 || pool < 1 || stride < 1) {
    throw std::invalid_argument("pool1d: pool and stride must be positive");
  }
  Pool1dShape s;
  s.batch = batch;
  s.steps = steps;
  s.channels = channels;
  s.pool = pool;
  s.stride = stride;
  if (same) {
    s.out_steps = (steps + stride - 1) / stride;
    s.pad_left = std::max<idx>((s.out_steps - 1) * stride + pool - steps, 0) / 2;
  } else {
    if (steps < pool) throw std::invalid_argument("pool1d: the window is longer than the input");
    s.out_steps = (steps - pool) / stride + 1;
  }
  return s;
}

template <class T>
void average_pool1d_forward(const T* x, const Pool1dShape& s, T* y, int threads) {
  const idx C = s.channels;
  for_output_rows(s, threads, [&](idx b, idx t) {
    idx lo, hi;
    window(s, t, &lo, &hi);
    T* yr = y + (b * s.out_steps + t) * C;
    const double inv = 1.0 / static_cast<double>(hi - lo);
    for (idx c = 0; c < C; ++c) {
      double acc = 0;
      for (idx p = lo; p < hi; ++p) acc += x[(b * s.steps + p) * C + c];
      yr[c] = static_cast<T>(acc * inv);
    }
  });
}

template <class T>
void average_pool1d_backward(const T* dy, const Pool1dShape& s, T* dx, int threads) {
  const idx C = s.channels;
  for_input_bands(s, dx, threads, [&](idx b, idx c0, idx c1, T* dxb) {
    for (idx t = 0; t < s.out_steps; ++t) {
      idx lo, hi;
      window(s, t, &lo, &hi);
      const T inv = static_cast<T>(1.0 / static_cast<double>(hi - lo));
      const T* gr = dy + (b * s.out_steps + t) * C;
      for (idx p = lo; p < hi; ++p) {
        T* dr = dxb + p * C;
        for (idx c = c0; c < c1; ++c) dr[c] += gr[c] * inv;
      }
    }
  });
}

template <class T>
void max_pool1d_forward(const T* x, const Pool1dShape& s, T* y, int threads) {
  const idx C = s.channels;
  for_output_rows(s, threads, [&](idx b, idx t) {
    idx lo, hi;
    window(s, t, &lo, &hi);
    T* yr = y + (b * s.out_steps + t) * C;
    const T* x0 = x + (b * s.steps + lo) * C;
    std::copy(x0, x0 + C, yr);
    for (idx p = lo + 1; p < hi; ++p) {
      const T* xr = x + (b * s.steps + p) * C;
      for (idx c = 0; c < C; ++c) yr[c] = xr[c] > yr[c] ? xr[c] : yr[c];
    }
  });
}

template <class T>
void max_pool1d_backward(const T* x, const T* dy, const Pool1dShape& s, T* dx, int threads) {
  const idx C = s.channels;
  for_input_bands(s, dx, threads, [&](idx b, idx c0, idx c1, T* dxb) {
    const T* xb = x + b * s.steps * C;
    for (idx t = 0; t < s.out_steps; ++t) {
      idx lo, hi;
      window(s, t, &lo, &hi);
      const T* gr = dy + (b * s.out_steps + t) * C;
      for (idx c = c0; c < c1; ++c) {
        idx best = lo;
        for (idx p = lo + 1; p < hi; ++p) {
          if (xb[p * C + c] > xb[best * C + c]) best = p;
        }
        dxb[best * C + c] += gr[c];
      }
    }
  });
}

#define MH_INSTANTIATE_POOLING(T)                                                              \
  template void average_steps_forward<T>(const T*, idx, idx, idx, const int32_t*, T*, int);    \
  template void average_steps_backward<T>(const T*, idx, idx, idx, const int32_t*, T*, int);   \
  template void average_pool1d_forward<T>(const T*, const Pool1dShape&, T*, int);              \
  template void average_pool1d_backward<T>(const T*, const Pool1dShape&, T*, int);             \
  template void max_pool1d_forward<T>(const T*, const Pool1dShape&, T*, int);                  \
  template void max_pool1d_backward<T>(const T*, const T*, const Pool1dShape&, T*, int);

MH_INSTANTIATE_POOLING(float)
MH_INSTANTIATE_POOLING(double)

}  // namespace mh
