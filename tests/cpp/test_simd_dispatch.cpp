// The run-time SIMD dispatch (cpu_dispatch.h) and the AVX2 + FMA kernels
// (simd_kernels.h) against plain references: products for every remainder
// of the register blocks and every operand layout, the packed projection,
// conversions with their finiteness check, the softmax steps and transposes.
// On a path without the kernels, the decision itself and the portable
// products are what is checked.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu_dispatch.h"
#include "packed_gemm.h"
#include "simd_kernels.h"
#include "test_util.h"

namespace {

using mh::idx;

TEST(SimdDispatch, DecisionFollowsBuildCpuAndEnvironment) {
  const mh::SimdInfo& info = mh::simd_info();
  EXPECT_EQ(&info, &mh::simd_info());  // decided once, cached
  const bool want = info.compiled && info.cpu && !info.forced;
  EXPECT_EQ(info.path == mh::SimdPath::avx2_fma, want);
  EXPECT_EQ(mh::use_avx2(), want);
  EXPECT_EQ(info.compiled, MH_AVX2_KERNELS != 0);
  EXPECT_STREQ(mh::simd_path_name(mh::SimdPath::avx2_fma), "avx2+fma");
  EXPECT_STREQ(mh::simd_path_name(mh::SimdPath::portable), "portable");
#if MH_AVX2_KERNELS
  __builtin_cpu_init();
  EXPECT_EQ(info.cpu, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
  EXPECT_FALSE(info.cpu);
#endif
}

// C (M, N) = [C +] A B in double, A(i, p) = a[i * ars + p * acs],
// B(p, j) = b[p * brs + j * bcs], C row-major with ldc.
std::vector<double> reference(idx M, idx N, idx K, const float* a, idx ars, idx acs,
                              const float* b, idx brs, idx bcs, const float* c0, idx ldc) {
  std::vector<double> c(static_cast<size_t>(M * N));
  for (idx i = 0; i < M; ++i)
    for (idx j = 0; j < N; ++j) {
      double s = c0 ? c0[i * ldc + j] : 0.0;
      for (idx p = 0; p < K; ++p) s += double(a[i * ars + p * acs]) * b[p * brs + j * bcs];
      c[static_cast<size_t>(i * N + j)] = s;
    }
  return c;
}

// max |got - want| / (1 + |want|) over C, and whether C's padding (columns
// N .. ldc - 1) kept its value.
double rel_error(const std::vector<double>& want, const std::vector<float>& got, idx M, idx N,
                 idx ldc, float pad, bool* pad_ok) {
  double e = 0;
  *pad_ok = true;
  for (idx i = 0; i < M; ++i) {
    for (idx j = 0; j < N; ++j) {
      const double w = want[static_cast<size_t>(i * N + j)];
      e = std::max(e, std::fabs(got[static_cast<size_t>(i * ldc + j)] - w) / (1 + std::fabs(w)));
    }
    for (idx j = N; j < ldc; ++j)
      if (got[static_cast<size_t>(i * ldc + j)] != pad) *pad_ok = false;
  }
  return e;
}

// mh::gemm (the dispatched product) on both paths' layouts: row- and
// column-major A and B, every remainder of 6 rows and 16 columns, K across
// the 256-deep blocks, with and without accumulation.
TEST(SimdDispatch, GemmMatchesReferenceForEveryLayout) {
  const idx Ms[] = {1, 2, 3, 4, 5, 6, 7, 13, 97};
  const idx Ns[] = {1, 8, 16, 17, 33, 257, 1030};
  const idx Ks[] = {0, 1, 9, 256, 300};
  int cases = 0;
  for (idx M : Ms)
    for (idx N : Ns)
      for (idx K : Ks) {
        if (M * N * K > 2000000) continue;
        const auto A = mhtest::random_values<float>(M * K + 1, 11 + M + 7 * K);
        const auto B = mhtest::random_values<float>(K * N + 1, 23 + N + 5 * K);
        for (int layout = 0; layout < 4; ++layout) {
          const bool at = layout & 1, bt = layout & 2;
          const idx ars = at ? 1 : K, acs = at ? M : 1;
          const idx brs = bt ? 1 : N, bcs = bt ? K : 1;
          for (int accumulate = 0; accumulate < 2; ++accumulate) {
            const idx ldc = N + 3;
            std::vector<float> C(static_cast<size_t>(M * ldc), 0.5f);
            const std::vector<float> C0 = C;
            mh::gemm<float>(M, N, K, A.data(), ars, acs, B.data(), brs, bcs, C.data(), ldc,
                            accumulate != 0);
            const auto want = reference(M, N, K, A.data(), ars, acs, B.data(), brs, bcs,
                                        accumulate ? C0.data() : nullptr, ldc);
            bool pad_ok;
            const double e = rel_error(want, C, M, N, ldc, 0.5f, &pad_ok);
            EXPECT_LT(e, 1e-5 * (1 + K / 64.0)) << M << "x" << N << "x" << K << " layout "
                                                 << layout << " acc " << accumulate;
            EXPECT_TRUE(pad_ok) << M << "x" << N << "x" << K;
            ++cases;
          }
        }
      }
  EXPECT_GT(cases, 500);
}

// One or two rows with B's columns adjacent: every C element is the chain
// c <- fma(a(i, p), b(p, j), c) over p in order (bitwise), across the
// column blocks and the masked tail.
TEST(SimdDispatch, GemmOfFewRowsIsAnFmaChain) {
  if (!mh::use_avx2()) return;
  for (idx M : {1, 2})
    for (idx N : {5, 8, 1024, 1030, 2053})
      for (idx K : {1, 37, 300}) {
        const auto A = mhtest::random_values<float>(M * K, 3 + M + K);
        const auto B = mhtest::random_values<float>(K * N, 7 + N + K);
        for (int accumulate = 0; accumulate < 2; ++accumulate) {
          const idx ldc = N + 5;
          std::vector<float> C(static_cast<size_t>(M * ldc), 0.25f), want = C;
          mh::gemm<float>(M, N, K, A.data(), K, 1, B.data(), N, 1, C.data(), ldc, accumulate != 0);
          for (idx i = 0; i < M; ++i)
            for (idx j = 0; j < N; ++j) {
              float c = accumulate ? want[static_cast<size_t>(i * ldc + j)] : 0.0f;
              for (idx p = 0; p < K; ++p) c = std::fma(A[static_cast<size_t>(i * K + p)], B[static_cast<size_t>(p * N + j)], c);
              want[static_cast<size_t>(i * ldc + j)] = c;
            }
          EXPECT_EQ(C, want) << M << "x" << N << "x" << K << " acc " << accumulate;
        }
      }
}

// B with unit column stride is read in place for at most 96 rows of A and a
// row stride that is not a multiple of 1024 floats, and packed otherwise;
// both give the same sums in the same order: bitwise the same C.
TEST(SimdDispatch, GemmGivesTheSameBitsWithBInPlaceOrPacked) {
  if (!mh::use_avx2()) return;
  for (int accumulate = 0; accumulate < 2; ++accumulate) {
    {  // 200 rows (B packed) against the same rows in calls of 96 (B in place)
      const idx M = 200, N = 300, K = 300;
      const auto A = mhtest::random_values<float>(M * K, 41);
      const auto B = mhtest::random_values<float>(K * N, 43);
      std::vector<float> whole(static_cast<size_t>(M * N), 0.75f), parts = whole;
      mh::gemm<float>(M, N, K, A.data(), K, 1, B.data(), N, 1, whole.data(), N, accumulate != 0);
      for (idx i0 = 0; i0 < M; i0 += 96)
        mh::gemm<float>(std::min<idx>(96, M - i0), N, K, A.data() + i0 * K, K, 1, B.data(), N, 1,
                        parts.data() + i0 * N, N, accumulate != 0);
      EXPECT_EQ(whole, parts) << "acc " << accumulate;
    }
    {  // a row stride of 1024 floats (B packed) against B at stride 1040 (in place)
      const idx M = 50, N = 1024, K = 300, ld = 1040;
      const auto A = mhtest::random_values<float>(M * K, 47);
      const auto B = mhtest::random_values<float>(K * N, 53);
      std::vector<float> Bw(static_cast<size_t>(K * ld), 0.0f);
      for (idx p = 0; p < K; ++p)
        for (idx j = 0; j < N; ++j) Bw[static_cast<size_t>(p * ld + j)] = B[static_cast<size_t>(p * N + j)];
      std::vector<float> packed(static_cast<size_t>(M * N), 0.75f), direct = packed;
      mh::gemm<float>(M, N, K, A.data(), K, 1, B.data(), N, 1, packed.data(), N, accumulate != 0);
      mh::gemm<float>(M, N, K, A.data(), K, 1, Bw.data(), ld, 1, direct.data(), N, accumulate != 0);
      EXPECT_EQ(packed, direct) << "acc " << accumulate;
    }
  }
}

// The unpacked tile kernel (flash attention's), when the kernels run.
TEST(SimdDispatch, TileGemmKernelMatchesReference) {
  if (!mh::use_avx2()) {
    EXPECT_FALSE(mh::simd_info().compiled && mh::simd_info().cpu && !mh::simd_info().forced);
    return;
  }
  for (idx M : {1, 6, 11, 64})
    for (idx N : {1, 15, 16, 31, 128})
      for (idx K : {1, 32, 64}) {
        const auto A = mhtest::random_values<float>(M * K, 5 + M + N);
        const auto B = mhtest::random_values<float>(K * N, 7 + K);
        for (int at = 0; at < 2; ++at)
          for (int accumulate = 0; accumulate < 2; ++accumulate) {
            const idx ars = at ? 1 : K, acs = at ? M : 1;
            std::vector<float> C(static_cast<size_t>(M * (N + 2)), -1.0f);
            const std::vector<float> C0 = C;
            mh::avx2::tile_gemm_f32(M, N, K, A.data(), ars, acs, B.data(), N, C.data(), N + 2,
                                    accumulate != 0);
            const auto want = reference(M, N, K, A.data(), ars, acs, B.data(), N, 1,
                                        accumulate ? C0.data() : nullptr, N + 2);
            bool pad_ok;
            EXPECT_LT(rel_error(want, C, M, N, N + 2, -1.0f, &pad_ok), 1e-5);
            EXPECT_TRUE(pad_ok);
          }
      }
}

// The packed projection: pack_panels from column-major doubles (finiteness
// check included), pack_weights, the product with a bias, store_columns.
TEST(SimdDispatch, PackedProjectionMatchesReference) {
  if (!mh::use_avx2()) {
    EXPECT_FALSE(mh::packed_projection());
    return;
  }
  for (idx nr : {1, 6, 13, 40})
    for (idx in : {1, 8, 9, 300})
      for (idx out : {1, 16, 21, 40}) {
        const idx ldx = nr + 5;
        const auto xd = mhtest::random_values<double>(ldx * in, 31 + nr + in);
        const auto w = mhtest::random_values<float>(in * out, 37 + out);
        const auto bias = mhtest::random_values<float>(out, 41);
        const mh::PackedWeights pw = mh::pack_weights(w.data(), in, out);
        std::vector<float> scratch(static_cast<size_t>(mh::packed_scratch_floats(nr, in, out)));
        bool ok = false;
        const float* y = mh::packed_projection_block(xd.data(), ldx, 2, nr, pw, bias.data(), scratch.data(), true, &ok);
        EXPECT_TRUE(ok);
        std::vector<float> xf(static_cast<size_t>(nr * in));
        for (idx r = 0; r < nr; ++r)
          for (idx f = 0; f < in; ++f) xf[static_cast<size_t>(r * in + f)] = float(xd[r + 2 + f * ldx]);
        auto want = reference(nr, out, in, xf.data(), in, 1, w.data(), out, 1, nullptr, out);
        for (idx r = 0; r < nr; ++r)
          for (idx j = 0; j < out; ++j) want[static_cast<size_t>(r * out + j)] += bias[j];
        bool pad_ok;
        const std::vector<float> got(y, y + nr * out);
        EXPECT_LT(rel_error(want, got, nr, out, out, 0, &pad_ok), 1e-5 * (1 + in / 64.0));
        // store_columns: the block into an R matrix's columns, exactly
        std::vector<double> dst(static_cast<size_t>((nr + 1) * out), -2.0);
        mh::store_columns(y, nr, out, nullptr, dst.data() + 1, nr + 1);
        for (idx j = 0; j < out; ++j)
          for (idx r = 0; r < nr; ++r)
            EXPECT_EQ(dst[static_cast<size_t>(1 + r + j * (nr + 1))], double(y[r * out + j]));
      }
  // a non-finite value anywhere (every lane and the tail) is reported
  for (idx at = 0; at < 14 * 9; ++at) {
    const idx nr = 14, in = 9;
    auto xd = mhtest::random_values<double>(nr * in, 3);
    xd[static_cast<size_t>(at)] = at % 3 == 0 ? NAN : at % 3 == 1 ? INFINITY : 1e300;
    std::vector<float> a(static_cast<size_t>(18 * in));
    EXPECT_FALSE(mh::pack_panels(xd.data(), nr, 0, nr, in, a.data(), true)) << at;
  }
}

TEST(SimdDispatch, ConversionKernelsAreExactAndCheckFiniteness) {
  if (!mh::use_avx2()) {
    EXPECT_FALSE(mh::use_avx2());
    return;
  }
  for (idx n : {0, 1, 7, 8, 9, 33}) {
    const auto d = mhtest::random_values<double>(n, 17 + n, -1e3, 1e3);
    std::vector<float> f(static_cast<size_t>(n));
    std::vector<double> back(static_cast<size_t>(n));
    EXPECT_TRUE(mh::avx2::convert_f64_f32_finite(d.data(), n, f.data()));
    for (idx i = 0; i < n; ++i) EXPECT_EQ(f[i], static_cast<float>(d[i]));
    mh::avx2::convert_f64_f32(d.data(), n, f.data());
    mh::avx2::convert_f32_f64(f.data(), n, back.data());
    for (idx i = 0; i < n; ++i) EXPECT_EQ(back[i], static_cast<double>(static_cast<float>(d[i])));
    for (idx at = 0; at < n; ++at) {
      auto bad = d;
      bad[static_cast<size_t>(at)] = at % 2 ? -INFINITY : 1e40;  // 1e40: beyond float
      EXPECT_FALSE(mh::avx2::convert_f64_f32_finite(bad.data(), n, f.data())) << n << " " << at;
    }
  }
}

TEST(SimdDispatch, SoftmaxKernelsMatchReference) {
  if (!mh::use_avx2()) {
    EXPECT_FALSE(mh::use_avx2());
    return;
  }
  for (idx n : {1, 7, 8, 13, 128}) {
    const auto x = mhtest::random_values<float>(n, 3 + n, -20, 20);
    std::vector<float> p(static_cast<size_t>(n));
    float m_new = 0;
    const float scale = 0.25f, m_old = -1.0f;
    const float sum = mh::avx2::softmax_run_f32(x.data(), n, scale, m_old, &m_new, p.data());
    float mx = m_old;
    for (idx j = 0; j < n; ++j) mx = std::max(mx, x[j] * scale);
    EXPECT_EQ(m_new, mx);
    double s = 0;
    for (idx j = 0; j < n; ++j) {
      // the kernel's argument: the scaled logit and the subtraction rounded to float
      const float arg = x[j] * scale - mx;
      const double want = std::exp(double(arg));
      EXPECT_NEAR(p[j], want, 3e-7 * want + 1e-37);
      s += p[j];
    }
    EXPECT_NEAR(sum, s, 1e-6 * s);
    // exp_from_lse: exp(scale x - L)
    std::vector<float> q(x.begin(), x.end());
    mh::avx2::exp_from_lse_f32(q.data(), n, scale, 6.0f);
    for (idx j = 0; j < n; ++j) {
      const float arg = x[j] * scale - 6.0f;
      const double want = std::exp(double(arg));
      EXPECT_NEAR(q[j], want, 3e-7 * want + 1e-37);
    }
    // the softmax backward step dS = P (dP - D)
    auto dp = mhtest::random_values<float>(n, 9 + n);
    const auto dp0 = dp;
    mh::avx2::softmax_grad_f32(p.data(), dp.data(), n, 0.125f);
    for (idx j = 0; j < n; ++j) EXPECT_EQ(dp[j], p[j] * (dp0[j] - 0.125f));
  }
  float m_new = 0;
  std::vector<float> x(5, -INFINITY), p(5);
  EXPECT_EQ(mh::avx2::softmax_run_f32(x.data(), 5, 1.0f, -INFINITY, &m_new, p.data()), 0.0f);
  EXPECT_EQ(m_new, -INFINITY);
}

TEST(SimdDispatch, TransposeKernelsAreExact) {
  if (!mh::use_avx2()) {
    EXPECT_FALSE(mh::use_avx2());
    return;
  }
  for (idx rows : {1, 8, 13})
    for (idx cols : {1, 8, 19}) {
      const auto in = mhtest::random_values<float>(rows * (cols + 1), 5);
      std::vector<float> out(static_cast<size_t>(cols * (rows + 2)), 9.0f);
      mh::avx2::transpose_block_f32(in.data(), cols + 1, rows, cols, out.data(), rows + 2);
      for (idx r = 0; r < rows; ++r)
        for (idx c = 0; c < cols; ++c)
          EXPECT_EQ(out[static_cast<size_t>(c * (rows + 2) + r)], in[static_cast<size_t>(r * (cols + 1) + c)]);
      std::vector<const float*> rp(static_cast<size_t>(rows));
      for (idx r = 0; r < rows; ++r) rp[static_cast<size_t>(r)] = in.data() + r * (cols + 1);
      std::vector<float> o(static_cast<size_t>(cols * (rows + 3)), 9.0f);
      mh::avx2::store_transposed_f32(rp.data(), rows, cols, rows + 3, o.data());
      for (idx r = 0; r < rows; ++r)
        for (idx c = 0; c < cols; ++c)
          EXPECT_EQ(o[static_cast<size_t>(c * (rows + 3) + r)], rp[static_cast<size_t>(r)][c]);
    }
}

}  // namespace
