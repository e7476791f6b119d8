// Shared helpers for the core's GoogleTest suite: deterministic random data,
// naive references (plain loops over the definitions in layout.h, in double)
// and central finite differences.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "dropout_rng.h"
#include "layout.h"

namespace mhtest {

using mh::idx;

// n values uniform in [lo, hi), the same for the same seed.
template <class T>
std::vector<T> random_values(idx n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> x(static_cast<size_t>(n));
  for (auto& v : x) v = static_cast<T>(u(gen));
  return x;
}

// n int32 flags, each 1 with probability p_one.
inline std::vector<int32_t> random_flags(idx n, uint64_t seed, double p_one) {
  std::mt19937_64 gen(seed);
  std::bernoulli_distribution coin(p_one);
  std::vector<int32_t> x(static_cast<size_t>(n));
  for (auto& v : x) v = coin(gen) ? 1 : 0;
  return x;
}

template <class T>
std::vector<T> cast_values(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}

// Expects |actual[i] - expected[i]| <= tol * (1 + |expected[i]|) for every i
// and reports the first mismatch.
template <class A>
void expect_close(const std::vector<A>& actual, const std::vector<double>& expected, double tol,
                  const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = static_cast<double>(actual[i]), e = expected[i];
    if (!(std::fabs(a - e) <= tol * (1.0 + std::fabs(e)))) {
      ADD_FAILURE() << what << ": element " << i << " is " << a << ", expected " << e
                    << " (tolerance " << tol << ")";
      return;
    }
  }
}

template <class A, class B>
bool bitwise_equal(const A& a, const B& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0);
}

// sum(a * g)
template <class T>
double weighted_sum(const T* a, const std::vector<double>& g) {
  double s = 0;
  for (size_t i = 0; i < g.size(); ++i) s += static_cast<double>(a[i]) * g[i];
  return s;
}

// Central differences of loss() with respect to every element of x (which
// loss() must read); x is restored afterwards.
inline std::vector<double> numeric_gradient(std::vector<double>& x,
                                            const std::function<double()>& loss,
                                            double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double up = loss();
    x[i] = x0 - h;
    const double down = loss();
    x[i] = x0;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// y (rows, out) = x (rows, in) w (in, out) + b (out; may be null), row-major.
template <class T>
std::vector<double> naive_dense(const T* x, idx rows, idx in, const T* w, const T* b, idx out) {
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (idx r = 0; r < rows; ++r) {
    for (idx o = 0; o < out; ++o) {
      double s = b ? static_cast<double>(b[o]) : 0.0;
      for (idx i = 0; i < in; ++i) s += static_cast<double>(x[r * in + i]) * w[i * out + o];
      y[r * out + o] = s;
    }
  }
  return y;
}

// Whether query t of (batch b, head n) may attend key s: every mask kind of
// layout.h evaluated from its definition.
inline bool naive_allowed(const mh::AttentionMask& m, const mh::MhaDims& d, idx b, idx n, idx t,
                          idx s) {
  if (m.mask) {
    const idx mb = m.mask_b == 1 ? 0 : b, mn = m.mask_n == 1 ? 0 : n;
    if (m.mask[((mb * m.mask_n + mn) * d.T + t) * d.S + s] == 0) return false;
  }
  if (m.qmask && m.qmask[b * d.T + t] == 0) return false;
  if (m.kmask && m.kmask[b * d.S + s] == 0) return false;
  if (m.causal && s > t) return false;
  if (m.window > 0 && (t - s >= m.window || s - t >= m.window)) return false;
  return true;
}

// Attention per element, in double. q (B,T,N,H), k (B,S,N,H), v (B,S,N,Hv);
// probs (B,N,T,S) before dropout, ctx (B,T,N,Hv). A row with no allowed key
// has zero probabilities.
template <class T>
void naive_attention(const mh::MhaDims& d, const T* q, const T* k, const T* v,
                     const mh::AttentionMask& m, const mh::DropoutSpec& drop, double scale,
                     std::vector<double>* ctx, std::vector<double>* probs) {
  const idx B = d.B, N = d.N, Tq = d.T, S = d.S, H = d.H, Hv = d.Hv;
  ctx->assign(static_cast<size_t>(B * Tq * N * Hv), 0.0);
  probs->assign(static_cast<size_t>(B * N * Tq * S), 0.0);
  std::vector<double> logit(static_cast<size_t>(S));
  std::vector<bool> ok(static_cast<size_t>(S));
  for (idx b = 0; b < B; ++b) {
    for (idx n = 0; n < N; ++n) {
      for (idx t = 0; t < Tq; ++t) {
        double mx = -INFINITY;
        bool any = false;
        for (idx s = 0; s < S; ++s) {
          ok[s] = naive_allowed(m, d, b, n, t, s);
          double z = 0;
          for (idx h = 0; h < H; ++h) {
            z += static_cast<double>(q[((b * Tq + t) * N + n) * H + h]) *
                 k[((b * S + s) * N + n) * H + h];
          }
          logit[s] = z * scale;
          if (ok[s]) {
            any = true;
            mx = std::max(mx, logit[s]);
          }
        }
        if (!any) continue;
        double sum = 0;
        for (idx s = 0; s < S; ++s) sum += ok[s] ? std::exp(logit[s] - mx) : 0.0;
        for (idx s = 0; s < S; ++s) {
          const double p = ok[s] ? std::exp(logit[s] - mx) / sum : 0.0;
          const idx flat = ((b * N + n) * Tq + t) * S + s;
          (*probs)[flat] = p;
          double pd = p;
          if (drop.rate >= 1.0) {
            pd = 0;
          } else if (drop.rate > 0.0) {
            pd = mh::dropout_keep(drop.key, static_cast<uint64_t>(flat), drop.rate)
                     ? p / (1.0 - drop.rate)
                     : 0.0;
          }
          for (idx h = 0; h < Hv; ++h) {
            (*ctx)[((b * Tq + t) * N + n) * Hv + h] += pd * v[((b * S + s) * N + n) * Hv + h];
          }
        }
      }
    }
  }
}

// A test's mask: owns the buffers; view() is the core's AttentionMask.
struct MaskStore {
  std::string name;
  std::vector<int32_t> mask, qmask, kmask;  // empty = absent
  idx mask_b = 1, mask_n = 1;
  bool causal = false;
  idx window = 0;

  mh::AttentionMask view() const {
    mh::AttentionMask m;
    m.mask = mask.empty() ? nullptr : mask.data();
    m.mask_b = mask_b;
    m.mask_n = mask_n;
    m.qmask = qmask.empty() ? nullptr : qmask.data();
    m.kmask = kmask.empty() ? nullptr : kmask.data();
    m.causal = causal;
    m.window = window;
    return m;
  }
};

// Attention dims (the projection sizes are irrelevant to the kernel).
inline mh::MhaDims dims(idx B, idx N, idx T, idx S, idx H, idx Hv) {
  mh::MhaDims d;
  d.B = B; d.N = N; d.T = T; d.S = S; d.H = H; d.Hv = Hv;
  d.E = d.Dk = d.Dv = d.O = 1;  // unused by the kernel
  return d;
}

// Every mask kind alone, broadcasting variants, combinations and rows with
// no allowed key, for dims d.
inline std::vector<MaskStore> mask_cases(const mh::MhaDims& d) {
  const idx B = d.B, N = d.N, T = d.T, S = d.S;
  std::vector<MaskStore> cases;
  auto add = [&](const std::string& name) -> MaskStore& {
    cases.emplace_back();
    cases.back().name = name;
    return cases.back();
  };
  add("none");
  {
    MaskStore& c = add("explicit (B,N,T,S)");
    c.mask = random_flags(B * N * T * S, 31, 0.7);
    c.mask_b = B; c.mask_n = N;
  }
  {
    MaskStore& c = add("explicit (1,1,T,S)");
    c.mask = random_flags(T * S, 32, 0.6);
  }
  {
    MaskStore& c = add("explicit (B,1,T,S)");
    c.mask = random_flags(B * T * S, 33, 0.6);
    c.mask_b = B;
  }
  {
    MaskStore& c = add("explicit (1,N,T,S)");
    c.mask = random_flags(N * T * S, 34, 0.6);
    c.mask_n = N;
  }
  {
    MaskStore& c = add("query padding");
    c.qmask.assign(static_cast<size_t>(B * T), 1);
    c.qmask[B * T - 1] = 0;  // last query of the last batch
    c.qmask[0] = 0;          // first query of the first batch
  }
  {
    MaskStore& c = add("key padding");
    c.kmask.assign(static_cast<size_t>(B * S), 1);
    c.kmask[S - 1] = 0;
    c.kmask[S - 2] = 0;
  }
  add("causal").causal = true;
  add("window 1").window = 1;
  add("window 2").window = 2;
  {
    MaskStore& c = add("causal + window 2");
    c.causal = true;
    c.window = 2;
  }
  {
    MaskStore& c = add("everything");
    c.mask = random_flags(B * T * S, 35, 0.8);
    c.mask_b = B;
    c.qmask.assign(static_cast<size_t>(B * T), 1);
    c.qmask[1] = 0;
    c.kmask.assign(static_cast<size_t>(B * S), 1);
    c.kmask[0] = 0;
    c.causal = true;
    c.window = 3;
  }
  {
    // Batch B-1 has no valid key at all, and query 1 of head 0 sees an
    // all-zero explicit mask row: these rows must get zero probabilities.
    MaskStore& c = add("fully masked rows");
    c.kmask.assign(static_cast<size_t>(B * S), 1);
    for (idx s = 0; s < S; ++s) c.kmask[(B - 1) * S + s] = 0;
    c.mask.assign(static_cast<size_t>(N * T * S), 1);
    for (idx s = 0; s < S; ++s) c.mask[1 * S + s] = 0;
    c.mask_n = N;
  }
  return cases;
}

}  // namespace mhtest
