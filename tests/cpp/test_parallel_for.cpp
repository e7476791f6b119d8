// parallel_for and parallel_for_alongside (parallel.h): every index once, exceptions reach the caller,
// and the kernels built on it give bitwise identical results for 1, 2 and 4
// threads.
#include <atomic>
#include <stdexcept>
#include <string>

#include "attention.h"
#include "dense.h"
#include "dense_colmajor.h"
#include "dropout.h"
#include "layer_norm.h"
#include "mha_call.h"
#include "parallel.h"
#include "test_util.h"

namespace {

using mh::idx;
using mhtest::random_values;

TEST(ParallelFor, VisitsEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    for (long n : {0L, 1L, 2L, 37L, 1000L}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      for (auto& s : seen) s = 0;
      mh::parallel_for(n, threads, [&](long i) { seen[static_cast<size_t>(i)]++; });
      for (long i = 0; i < n; ++i) EXPECT_EQ(seen[i].load(), 1) << "n " << n << ", i " << i;
    }
  }
  int calls = 0;
  mh::parallel_for(-3, 4, [&](long) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ParallelFor, TinyCallsStayOnOneThreadLargeOnesDoNot) {
  // A tiny attention call (B = 1, T = S = 8, E = 16, 2 heads of 8): its
  // largest product and its element-wise passes run on the calling thread.
  EXPECT_EQ(mh::threads_for_macs(8.0 * 16 * 16, 4), 1);
  EXPECT_EQ(mh::threads_for_macs(2.0 * 9 * 9 * 16, 4), 1);
  EXPECT_EQ(mh::threads_for_elements(8.0 * 16, 4), 1);
  // B = 32, T = 128, E = 256: the projections are split.
  EXPECT_EQ(mh::threads_for_macs(4096.0 * 256 * 256, 4), 4);
  EXPECT_EQ(mh::threads_for_elements(4096.0 * 256, 2), 2);
}

TEST(ParallelFor, RethrowsTheBodysException) {
  for (int threads : {1, 2, 4}) {
    try {
      mh::parallel_for(50, threads, [](long i) {
        if (i == 17) throw std::out_of_range("index 17");
      });
      ADD_FAILURE() << "no exception with " << threads << " threads";
    } catch (const std::out_of_range& e) {
      EXPECT_EQ(std::string(e.what()), "index 17");
    }
    // Every iteration throws: one of them arrives, the others are dropped.
    EXPECT_THROW(mh::parallel_for(20, threads, [](long) { throw std::invalid_argument("x"); }),
                 std::invalid_argument);
    // The loop is usable again afterwards.
    std::atomic<long> sum{0};
    mh::parallel_for(10, threads, [&](long i) { sum += i; });
    EXPECT_EQ(sum.load(), 45);
  }
}

TEST(ParallelFor, AlongsideRunsTheSideJobOnceAndEveryIndexOnce) {
  for (int threads : {1, 2, 4}) {
    for (long n : {0L, 1L, 2L, 37L, 1000L}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      for (auto& s : seen) s = 0;
      std::atomic<int> side{0};
      mh::parallel_for_alongside(n, threads, [&] { side++; },
                                 [&](long i) { seen[static_cast<size_t>(i)]++; });
      EXPECT_EQ(side.load(), 1) << "threads " << threads << ", n " << n;
      for (long i = 0; i < n; ++i) EXPECT_EQ(seen[i].load(), 1) << "n " << n << ", i " << i;
    }
    // An exception from the side job or from the body reaches the caller.
    EXPECT_THROW(mh::parallel_for_alongside(
                     40, threads, [] { throw std::runtime_error("side"); }, [](long) {}),
                 std::runtime_error);
    EXPECT_THROW(mh::parallel_for_alongside(
                     40, threads, [] {},
                     [](long i) {
                       if (i == 3) throw std::out_of_range("body");
                     }),
                 std::out_of_range);
  }
}

// Kernels with per-thread scratch (the packed projections) called from the
// threads of someone else's parallel region: nested regions run serially
// there, and each call must still use its own scratch correctly.
void check_scratch_inside_outer_region(idx rows, idx in, idx out) {
  SCOPED_TRACE("rows " + std::to_string(rows) + ", in " + std::to_string(in));
  const auto x0 = random_values<double>(rows * in, 51), x1 = random_values<double>(rows * in, 52);
  const auto w = random_values<float>(in * out, 53), b = random_values<float>(out, 54);
  auto project = [&](const std::vector<double>& x, int threads) {
    std::vector<float> y(static_cast<size_t>(rows * out));
    mh::dense_forward_blocks_colmajor<float>(
        x.data(), rows, rows, in, w.data(), b.data(), out, threads,
        [&](idx r0, idx nr, const float* block) {
          std::copy(block, block + nr * out, y.begin() + r0 * out);
        });
    return y;
  };
  const std::vector<float> want0 = project(x0, 2), want1 = project(x1, 2);
  std::vector<float> got[4];
#ifdef _OPENMP
#pragma omp parallel for num_threads(4)
#endif
  for (int t = 0; t < 4; ++t) got[t] = project(t % 2 ? x1 : x0, 2);
  for (int t = 0; t < 4; ++t)
    EXPECT_TRUE(mhtest::bitwise_equal(got[t], t % 2 ? want1 : want0)) << "outer thread " << t;
}

TEST(ParallelFor, ScratchKernelsInsideAnOuterParallelRegion) {
  check_scratch_inside_outer_region(700, 40, 24);  // several blocks: a nested region
  check_scratch_inside_outer_region(100, 256, 256);  // 2 threads' work in one block: serial
}

// Runs `compute(threads)` (returning a vector of outputs) for 1, 2 and 4
// threads and expects identical bits.
template <class F>
void expect_thread_invariant(const std::string& what, F compute) {
  const auto one = compute(1);
  for (int threads : {2, 4}) {
    const auto many = compute(threads);
    ASSERT_EQ(one.size(), many.size());
    for (size_t i = 0; i < one.size(); ++i) {
      EXPECT_TRUE(mhtest::bitwise_equal(one[i], many[i]))
          << what << ": output " << i << " differs with " << threads << " threads";
    }
  }
}

// Sizes above the kernels' serial thresholds, so several threads really run.
TEST(ParallelFor, DenseIsThreadInvariant) {
  const idx rows = 700, in = 90, out = 33;
  const auto x = random_values<float>(rows * in, 1), w = random_values<float>(in * out, 2),
             b = random_values<float>(out, 3), dy = random_values<float>(rows * out, 4);
  expect_thread_invariant("dense", [&](int threads) {
    std::vector<std::vector<float>> r = {std::vector<float>(rows * out),
                                         std::vector<float>(rows * in),
                                         std::vector<float>(in * out), std::vector<float>(out)};
    mh::dense_forward(x.data(), rows, in, w.data(), b.data(), out, r[0].data(), threads);
    mh::dense_backward_input(dy.data(), rows, out, w.data(), in, r[1].data(), false, threads);
    mh::dense_backward_weights(x.data(), dy.data(), rows, in, out, r[2].data(), r[3].data(),
                               threads);
    return r;
  });
}

TEST(ParallelFor, MhaWithMaskAndDropoutIsThreadInvariant) {
  mh::MhaDims d;
  d.B = 3; d.T = 17; d.S = 23; d.E = 16; d.Dk = 12; d.Dv = 8; d.N = 4; d.H = 8; d.Hv = 5; d.O = 16;
  const idx NH = d.N * d.H, NHv = d.N * d.Hv;
  uint64_t seed = 10;
  auto rv = [&](idx n) { return random_values<double>(n, seed++); };
  const auto xq = rv(d.B * d.T * d.E), xk = rv(d.B * d.S * d.Dk), xv = rv(d.B * d.S * d.Dv),
             wq = rv(d.E * NH), bq = rv(NH), wk = rv(d.Dk * NH), bk = rv(NH), wg = rv(d.E * NHv),
             bg = rv(NHv), wv = rv(d.Dv * NHv), bv = rv(NHv), wo = rv(NHv * d.O), bo = rv(d.O),
             dout = rv(d.B * d.T * d.O);
  mh::MhaWeights<double> w;
  w.wq = wq.data(); w.bq = bq.data(); w.wk = wk.data(); w.bk = bk.data(); w.wg = wg.data();
  w.bg = bg.data(); w.wv = wv.data(); w.bv = bv.data(); w.wo = wo.data(); w.bo = bo.data();
  mhtest::MaskStore ms;
  ms.kmask.assign(static_cast<size_t>(d.B * d.S), 1);
  ms.kmask[5] = 0;
  ms.causal = true;
  ms.window = 9;
  mh::DropoutSpec drop;
  drop.rate = 0.2;
  drop.key = mh::dropout_key(5, 6);
  for (bool flash : mhtest::mha_kernels()) expect_thread_invariant(flash ? "mha flash" : "mha", [&](int threads) {
    std::vector<std::vector<double>> r = {
        std::vector<double>(d.B * d.T * d.O), std::vector<double>(xq.size()),
        std::vector<double>(xk.size()), std::vector<double>(xv.size()),
        std::vector<double>(wq.size()), std::vector<double>(bq.size()),
        std::vector<double>(wk.size()), std::vector<double>(bk.size()),
        std::vector<double>(wg.size()), std::vector<double>(bg.size()),
        std::vector<double>(wv.size()), std::vector<double>(bv.size()),
        std::vector<double>(wo.size()), std::vector<double>(bo.size())};
    mh::MhaCache<double> cache;
    mhtest::run_mha_forward(d, xq.data(), xk.data(), xv.data(), w, ms.view(), drop, flash,
                            threads, r[0].data(), static_cast<double*>(nullptr), &cache);
    mh::MhaGrads<double> g;
    double** slots[] = {&g.dxq, &g.dxk, &g.dxv, &g.dwq, &g.dbq, &g.dwk, &g.dbk,
                        &g.dwg, &g.dbg, &g.dwv, &g.dbv, &g.dwo, &g.dbo};
    for (size_t i = 0; i < 13; ++i) *slots[i] = r[i + 1].data();
    mhtest::run_mha_backward(d, xq.data(), xk.data(), xv.data(), w, ms.view(), drop, cache,
                             dout.data(), g, threads);
    r.emplace_back(cache.probs.begin(), cache.probs.end());
    return r;
  });
}

TEST(ParallelFor, DropoutAndLayerNormAreThreadInvariant) {
  const idx rows = 300, n = 257;  // rows * n above the serial threshold
  const auto x = random_values<float>(rows * n, 20), gamma = random_values<float>(n, 21),
             beta = random_values<float>(n, 22), dy = random_values<float>(rows * n, 23);
  expect_thread_invariant("dropout + layer norm", [&](int threads) {
    std::vector<std::vector<float>> r(5);
    r[0].resize(x.size());
    mh::dropout_apply(x.data(), std::vector<idx>{rows, n}, std::vector<idx>{rows, n}, 0.3,
                      mh::dropout_key(1, 2), r[0].data(), threads);
    r[1].resize(x.size());
    mh::layer_norm_forward(x.data(), rows, n, gamma.data(), beta.data(), 1e-3, r[1].data(),
                           threads);
    r[2].resize(x.size());
    r[3].resize(n);
    r[4].resize(n);
    mh::layer_norm_backward(x.data(), rows, n, gamma.data(), 1e-3, dy.data(), r[2].data(),
                            r[3].data(), r[4].data(), threads);
    return r;
  });
}

}  // namespace
