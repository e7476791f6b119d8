// Fused optimizer updates: see optimizer_update.h.
//
// No contraction into fused multiply-adds in this file: a*b + c must round
// the product as R does (the R reference rounds every operation). GCC
// contracts across statements by default in GNU mode with -mfma, so the
// pragma comes before every include (the whole translation unit, inlined
// helpers too).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "optimizer_update.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#if defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

#include "parallel.h"

namespace mh {
namespace {

// A task is at most kChunk elements of one variable; inside it, runs of kRun
// elements go through stack buffers (the decayed weight, the square root's
// argument). Both sizes are constants, so the split never depends on the
// thread count.
constexpr idx kChunk = idx(1) << 14;
constexpr idx kRun = 256;

// The slot inputs of a variable's first step.
const double kZeros[kRun] = {};

struct Chunk {
  idx var, begin, end;
};

// Throws before anything is written when a variable lacks an array the rule
// needs.
void check_vars(const char* rule, const std::vector<OptimizerVariable>& vars, const SlotUse& use) {
  for (size_t k = 0; k < vars.size(); ++k) {
    const OptimizerVariable& v = vars[k];
    auto fail = [&](const char* what) {
      throw std::invalid_argument(std::string("multihead core: ") + rule + " update, variable " +
                                  std::to_string(k + 1) + ": " + what);
    };
    if (v.n < 0) fail("negative size");
    if (v.n == 0) continue;
    if (!v.weight || !v.grad || !v.weight_out) fail("missing weight, gradient or output array");
    for (int s = 0; s < 3; ++s)
      if (use.used[s] && !v.slot_out[s]) fail("missing slot output array");
  }
}

// A float32 variable's updated weight, rounded to float32 (to nearest, as
// R's float32 layers store their weights) while the run is in cache.
inline void round_run(const OptimizerVariable& v, idx i0, idx len) {
  if (!v.round_float32) return;
  double* wo = v.weight_out + i0;
#pragma omp simd
  for (idx j = 0; j < len; ++j) wo[j] = static_cast<double>(static_cast<float>(wo[j]));
}

// Runs run(variable, first element, length) over every variable in runs of
// at most kRun elements, tasks of at most kChunk elements in parallel; then
// rounds the run's weights of float32 variables.
template <class Run>
void for_each_run(const std::vector<OptimizerVariable>& vars, int threads, Run run) {
  std::vector<Chunk> chunks;
  double total = 0;
  for (size_t k = 0; k < vars.size(); ++k) {
    const idx n = vars[k].n;
    total += static_cast<double>(n);
    for (idx b = 0; b < n; b += kChunk) chunks.push_back({static_cast<idx>(k), b, std::min(n, b + kChunk)});
  }
  parallel_for(static_cast<long>(chunks.size()), threads_for_elements(total, threads), [&](long c) {
    const Chunk& ch = chunks[static_cast<size_t>(c)];
    const OptimizerVariable& v = vars[static_cast<size_t>(ch.var)];
    for (idx i0 = ch.begin; i0 < ch.end; i0 += kRun) {
      const idx len = std::min(kRun, ch.end - i0);
      run(v, i0, len);
      round_run(v, i0, len);
    }
  });
}

inline const double* in_or_zeros(const double* p, idx i0) { return p ? p + i0 : kZeros; }

// The weight the rule starts from: decayed into `buf` when weight decay is
// on, else the input itself.
inline const double* decayed_weight(const WeightDecay& d, double lr, const double* w, idx len,
                                    double* buf) {
  if (!d.on) return w;
  const double wd = d.weight_decay;
#pragma omp simd
  for (idx j = 0; j < len; ++j) buf[j] = w[j] - (w[j] * wd) * lr;
  return buf;
}

// x <- sqrt(x), IEEE-exact (correctly rounded) in every branch. std::sqrt
// alone would not vectorise (it may set errno), hence the intrinsics.
inline void sqrt_run(double* x, idx len) {
  idx j = 0;
#if defined(__AVX__)
  for (; j + 4 <= len; j += 4) _mm256_storeu_pd(x + j, _mm256_sqrt_pd(_mm256_loadu_pd(x + j)));
#elif defined(__SSE2__)
  for (; j + 2 <= len; j += 2) _mm_storeu_pd(x + j, _mm_sqrt_pd(_mm_loadu_pd(x + j)));
#endif
  for (; j < len; ++j) x[j] = std::sqrt(x[j]);
}

// R's pmax(a, b) for one pair: b when it is NaN or larger, else a (so NaN
// when either is).
inline double r_pmax(double a, double b) { return (b != b || b > a) ? b : a; }

template <bool Momentum, bool Nesterov>
void sgd_run(const SgdParams& p, const OptimizerVariable& v, idx i0, idx len) {
  double buf[kRun];
  const double lr = p.learning_rate, mom = p.momentum;
  const double* w = decayed_weight(p.decay, lr, v.weight + i0, len, buf);
  const double* g = v.grad + i0;
  double* wo = v.weight_out + i0;
  if (!Momentum) {
#pragma omp simd
    for (idx j = 0; j < len; ++j) wo[j] = w[j] - g[j] * lr;
    return;
  }
  const double* m = in_or_zeros(v.slot[0], i0);
  double* mo = v.slot_out[0] + i0;
#pragma omp simd
  for (idx j = 0; j < len; ++j) {
    const double mj = m[j] * mom - g[j] * lr;
    mo[j] = mj;
    wo[j] = Nesterov ? w[j] + (mj * mom - g[j] * lr) : w[j] + mj;
  }
}

template <bool Amsgrad>
void adam_run(const AdamParams& p, const OptimizerVariable& v, idx i0, idx len) {
  double buf[kRun], den[kRun];
  const double one_minus_b1 = 1 - p.beta_1, one_minus_b2 = 1 - p.beta_2;
  const double alpha = p.alpha, eps = p.epsilon;
  const double* w = decayed_weight(p.decay, p.learning_rate, v.weight + i0, len, buf);
  const double* g = v.grad + i0;
  const double* m = in_or_zeros(v.slot[0], i0);
  const double* s = in_or_zeros(v.slot[1], i0);
  const double* h = Amsgrad ? in_or_zeros(v.slot[2], i0) : nullptr;
  double* wo = v.weight_out + i0;
  double* mo = v.slot_out[0] + i0;
  double* so = v.slot_out[1] + i0;
  double* ho = Amsgrad ? v.slot_out[2] + i0 : nullptr;
#pragma omp simd
  for (idx j = 0; j < len; ++j) {
    const double gj = g[j], mj = m[j], sj = s[j];
    mo[j] = mj + (gj - mj) * one_minus_b1;
    const double vj = sj + (gj * gj - sj) * one_minus_b2;
    so[j] = vj;
    if (Amsgrad) {
      const double hj = r_pmax(h[j], vj);
      ho[j] = hj;
      den[j] = hj;
    } else {
      den[j] = vj;
    }
  }
  sqrt_run(den, len);
#pragma omp simd
  for (idx j = 0; j < len; ++j) wo[j] = w[j] - (mo[j] * alpha) / (den[j] + eps);
}

template <bool Centered, bool Momentum>
void rmsprop_run(const RmspropParams& p, const OptimizerVariable& v, idx i0, idx len) {
  double buf[kRun], den[kRun];
  const double lr = p.learning_rate, rho = p.rho, one_minus_rho = 1 - p.rho;
  const double eps = p.epsilon, mom = p.momentum;
  const double* w = decayed_weight(p.decay, lr, v.weight + i0, len, buf);
  const double* g = v.grad + i0;
  const double* s = in_or_zeros(v.slot[0], i0);
  const double* a = Centered ? in_or_zeros(v.slot[1], i0) : nullptr;
  const double* m = Momentum ? in_or_zeros(v.slot[2], i0) : nullptr;
  double* wo = v.weight_out + i0;
  double* so = v.slot_out[0] + i0;
  double* ao = Centered ? v.slot_out[1] + i0 : nullptr;
  double* mo = Momentum ? v.slot_out[2] + i0 : nullptr;
#pragma omp simd
  for (idx j = 0; j < len; ++j) {
    const double gj = g[j];
    const double vj = rho * s[j] + one_minus_rho * (gj * gj);
    so[j] = vj;
    if (Centered) {
      const double aj = rho * a[j] + one_minus_rho * gj;
      ao[j] = aj;
      den[j] = (vj - aj * aj) + eps;
    } else {
      den[j] = vj + eps;
    }
  }
  sqrt_run(den, len);
#pragma omp simd
  for (idx j = 0; j < len; ++j) {
    const double inc = (lr * g[j]) / den[j];
    if (Momentum) {
      const double mj = mom * m[j] + inc;
      mo[j] = mj;
      wo[j] = w[j] - mj;
    } else {
      wo[j] = w[j] - inc;
    }
  }
}

}  // namespace

SlotUse sgd_slots(const SgdParams& p) {
  SlotUse u;
  u.used[0] = p.momentum != 0;
  return u;
}

SlotUse adam_slots(const AdamParams& p) {
  SlotUse u;
  u.used[0] = u.used[1] = true;
  u.used[2] = p.amsgrad;
  return u;
}

SlotUse rmsprop_slots(const RmspropParams& p) {
  SlotUse u;
  u.used[0] = true;
  u.used[1] = p.centered;
  u.used[2] = p.momentum > 0;
  return u;
}

void sgd_update(const SgdParams& p, const std::vector<OptimizerVariable>& vars, int threads) {
  check_vars("SGD", vars, sgd_slots(p));
  if (p.momentum == 0) {
    for_each_run(vars, threads, [&](const OptimizerVariable& v, idx i0, idx len) { sgd_run<false, false>(p, v, i0, len); });
  } else if (p.nesterov) {
    for_each_run(vars, threads, [&](const OptimizerVariable& v, idx i0, idx len) { sgd_run<true, true>(p, v, i0, len); });
  } else {
    for_each_run(vars, threads, [&](const OptimizerVariable& v, idx i0, idx len) { sgd_run<true, false>(p, v, i0, len); });
  }
}

void adam_update(const AdamParams& p, const std::vector<OptimizerVariable>& vars, int threads) {
  check_vars("Adam", vars, adam_slots(p));
  if (p.amsgrad) {
    for_each_run(vars, threads, [&](const OptimizerVariable& v, idx i0, idx len) { adam_run<true>(p, v, i0, len); });
  } else {
    for_each_run(vars, threads, [&](const OptimizerVariable& v, idx i0, idx len) { adam_run<false>(p, v, i0, len); });
  }
}

void rmsprop_update(const RmspropParams& p, const std::vector<OptimizerVariable>& vars, int threads) {
  check_vars("RMSprop", vars, rmsprop_slots(p));
  auto go = [&](auto run) { for_each_run(vars, threads, run); };
  if (p.centered && p.momentum > 0) {
    go([&](const OptimizerVariable& v, idx i0, idx len) { rmsprop_run<true, true>(p, v, i0, len); });
  } else if (p.centered) {
    go([&](const OptimizerVariable& v, idx i0, idx len) { rmsprop_run<true, false>(p, v, i0, len); });
  } else if (p.momentum > 0) {
    go([&](const OptimizerVariable& v, idx i0, idx len) { rmsprop_run<false, true>(p, v, i0, len); });
  } else {
    go([&](const OptimizerVariable& v, idx i0, idx len) { rmsprop_run<false, false>(p, v, i0, len); });
  }
}

}  // namespace mh
