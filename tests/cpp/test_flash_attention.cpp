// Flash attention (flash_attention.h, when the core has it): forward against
// the naive per-element attention, the row log-sum-exp against its
// definition, and the backward pass against the materialised kernel's
// (itself checked against finite differences in test_attention.cpp), on
// shapes with several ragged query and key tiles, for every mask kind.
#if __has_include("flash_attention.h")

#include <algorithm>
#include <cmath>

#include "attention.h"
#include "flash_attention.h"
#include "test_util.h"

namespace {

using mh::idx;
using mhtest::MaskStore;

// Naive lse (B, N, T): log sum over allowed s of exp(scale q.k), +Inf when
// no key is allowed.
std::vector<double> naive_lse(const mh::MhaDims& d, const std::vector<double>& q,
                              const std::vector<double>& k, const mh::AttentionMask& m,
                              double scale) {
  std::vector<double> lse(static_cast<size_t>(d.B * d.N * d.T));
  for (idx b = 0; b < d.B; ++b)
    for (idx n = 0; n < d.N; ++n)
      for (idx t = 0; t < d.T; ++t) {
        double sum = 0;
        for (idx s = 0; s < d.S; ++s) {
          if (!mhtest::naive_allowed(m, d, b, n, t, s)) continue;
          double z = 0;
          for (idx h = 0; h < d.H; ++h)
            z += q[((b * d.T + t) * d.N + n) * d.H + h] * k[((b * d.S + s) * d.N + n) * d.H + h];
          sum += std::exp(z * scale);
        }
        lse[(b * d.N + n) * d.T + t] = sum > 0 ? std::log(sum) : INFINITY;
      }
  return lse;
}

template <class T>
void check_flash(const mh::MhaDims& d, const MaskStore& mc, const mh::DropoutSpec& drop,
                 double tol) {
  SCOPED_TRACE(mc.name + ", dropout " + std::to_string(drop.rate));
  const auto qd = mhtest::random_values<double>(d.B * d.T * d.N * d.H, 1, -1.5, 1.5),
             kd = mhtest::random_values<double>(d.B * d.S * d.N * d.H, 2, -1.5, 1.5),
             vd = mhtest::random_values<double>(d.B * d.S * d.N * d.Hv, 3),
             gd = mhtest::random_values<double>(d.B * d.T * d.N * d.Hv, 4);
  const auto q = mhtest::cast_values<T>(qd), k = mhtest::cast_values<T>(kd),
             v = mhtest::cast_values<T>(vd), g = mhtest::cast_values<T>(gd);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d.H));
  const mh::AttentionMask m = mc.view();
  std::vector<T> ctx(gd.size(), T(99)), lse(static_cast<size_t>(d.B * d.N * d.T), T(99));
  // The projections hand their rows to the kernel's layout; here all at once.
  mh::FlashOperands<T> ops;
  mh::flash_operands_allocate(d, &ops);
  mh::flash_operands_store(d, 0, 0, d.B * d.T, nullptr, q.data(), &ops);
  mh::flash_operands_store(d, 1, 0, d.B * d.S, nullptr, k.data(), &ops);
  mh::flash_operands_store(d, 2, 0, d.B * d.S, nullptr, v.data(), &ops);
  mh::flash_attention_forward(d, ops, m, drop, static_cast<T>(scale), ctx.data(), lse.data(), 2);
  std::vector<double> ctx_ref, probs_ref;
  mhtest::naive_attention(d, q.data(), k.data(), v.data(), m, drop, scale, &ctx_ref, &probs_ref);
  mhtest::expect_close(ctx, ctx_ref, tol, "ctx");
  const auto lse_ref = naive_lse(d, std::vector<double>(q.begin(), q.end()),
                                 std::vector<double>(k.begin(), k.end()), m, scale);
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(lse_ref[i])) {
      EXPECT_TRUE(std::isinf(lse[i]) && lse[i] > 0) << "lse " << i;
    } else {
      EXPECT_NEAR(lse[i], lse_ref[i], tol * (1 + std::fabs(lse_ref[i]))) << "lse " << i;
    }
  }

  std::vector<T> dq(q.size(), T(99)), dk(k.size(), T(99)), dv(v.size(), T(99));
  // The backward pass consumes (frees) ops, its ctx and its dctx: give it copies.
  mh::Buffer<T> ctx_used(ctx.begin(), ctx.end()), dctx_used(g.begin(), g.end());
  mh::flash_attention_backward(d, ops, ctx_used, lse.data(), m, drop, static_cast<T>(scale),
                               dctx_used, dq.data(), dk.data(), dv.data(), 2);
  std::vector<T> mctx(ctx.size()), probs(probs_ref.size()), mdq(q.size()), mdk(k.size()),
      mdv(v.size());
  mh::attention_forward(d, q.data(), k.data(), v.data(), m, drop, static_cast<T>(scale),
                        mctx.data(), probs.data(), 1);
  mh::attention_backward(d, q.data(), k.data(), v.data(), probs.data(), drop,
                         static_cast<T>(scale), g.data(), mdq.data(), mdk.data(), mdv.data(), 1);
  mhtest::expect_close(dq, std::vector<double>(mdq.begin(), mdq.end()), tol, "dq");
  mhtest::expect_close(dk, std::vector<double>(mdk.begin(), mdk.end()), tol, "dk");
  mhtest::expect_close(dv, std::vector<double>(mdv.begin(), mdv.end()), tol, "dv");
}

// More queries and keys than one tile, neither a multiple of a tile size.
TEST(FlashAttention, MatchesNaiveAndMaterialisedForEveryMaskKind) {
  const mh::MhaDims d = mhtest::dims(2, 2, 70, 131, 4, 3);
  for (const MaskStore& mc : mhtest::mask_cases(d)) {
    check_flash<double>(d, mc, mh::DropoutSpec{}, 1e-10);
  }
  const mh::MhaDims small = mhtest::dims(1, 3, 5, 2, 2, 2);
  for (const MaskStore& mc : mhtest::mask_cases(small)) {
    check_flash<float>(small, mc, mh::DropoutSpec{}, 2e-5);
  }
  // float with head widths and key runs of several 8-lane vectors (the AVX
  // transposes of the operand stores and of the backward's per-head copies)
  const mh::MhaDims wide = mhtest::dims(2, 2, 37, 141, 16, 24);
  const auto wide_cases = mhtest::mask_cases(wide);
  check_flash<float>(wide, wide_cases.front(), mh::DropoutSpec{}, 1e-4);
  check_flash<float>(wide, wide_cases.back(), mh::DropoutSpec{}, 1e-4);
}

TEST(FlashAttention, DropoutMatchesTheMaterialisedStream) {
  const mh::MhaDims d = mhtest::dims(1, 2, 67, 140, 4, 3);
  const auto cases = mhtest::mask_cases(d);
  mh::DropoutSpec drop;
  drop.rate = 0.3;
  drop.key = mh::dropout_key(8, 1);
  check_flash<double>(d, cases.front(), drop, 1e-10);
  check_flash<double>(d, cases[cases.size() - 2], drop, 1e-10);
  check_flash<float>(d, cases.back(), drop, 1e-4);
}

// The rows of a projection in the order the column-major calls pass them:
// R's batch-fastest order, reversed in the second half (a fixed shuffle).
std::vector<idx> shuffled_rows(const mh::MhaDims& d, idx L) {
  const idx rows = d.B * L;
  std::vector<idx> row_map(static_cast<size_t>(rows));
  for (idx r = 0; r < rows; ++r) row_map[r] = (r % d.B) * L + r / d.B;
  std::reverse(row_map.begin() + rows / 2, row_map.end());
  return row_map;
}

// Rows r0 .. r0 + nr - 1 of a projection with NW columns whose values name
// their place: row_map[r] * 1000 + column.
template <class T>
std::vector<T> labelled_block(const std::vector<idx>& row_map, idx r0, idx nr, idx NW) {
  std::vector<T> block(static_cast<size_t>(nr * NW));
  for (idx i = 0; i < nr; ++i)
    for (idx c = 0; c < NW; ++c) block[i * NW + c] = static_cast<T>(row_map[r0 + i] * 1000 + c);
  return block;
}

// flash_operands_store puts every projected row where the kernel reads it,
// for rows handed over in blocks of any size and in any order (a row map, as
// the column-major calls pass), key runs shorter and longer than a vector,
// ragged key tiles, and head widths with and without a vector remainder.
template <class T>
void check_operand_store(const mh::MhaDims& d, idx block_rows) {
  SCOPED_TRACE("H " + std::to_string(d.H) + ", block " + std::to_string(block_rows));
  const idx tile = mh::kFlashKeyTile, n_tiles = (d.S + tile - 1) / tile;
  for (int which = 0; which < 3; ++which) {
    const idx L = which == 0 ? d.T : d.S, W = which == 2 ? d.Hv : d.H, NW = d.N * W;
    const idx rows = d.B * L;
    const std::vector<idx> row_map = shuffled_rows(d, L);
    mh::FlashOperands<T> ops;
    mh::flash_operands_allocate(d, &ops);
    for (idx r0 = 0; r0 < rows; r0 += block_rows) {
      const idx nr = std::min(block_rows, rows - r0);
      const std::vector<T> block = labelled_block<T>(row_map, r0, nr, NW);
      mh::flash_operands_store(d, which, r0, nr, row_map.data(), block.data(), &ops);
    }
    int wrong = 0;
    for (idx b = 0; b < d.B; ++b)
      for (idx n = 0; n < d.N; ++n)
        for (idx l = 0; l < L; ++l)
          for (idx w = 0; w < W; ++w) {
            const T want = static_cast<T>((b * L + l) * 1000 + n * W + w);
            T got;
            if (which == 0) got = ops.q[((b * d.N + n) * L + l) * W + w];
            else if (which == 2) got = ops.v[((b * d.N + n) * L + l) * W + w];
            else got = ops.kt[((b * d.N + n) * n_tiles + l / tile) * W * tile + w * tile + l % tile];
            if (got != want) ++wrong;
          }
    EXPECT_EQ(wrong, 0) << "operand " << which;
  }
}

// The direct destinations of q and v (flash_operands_rows / _strips, for a
// projection kernel that writes its rows in place) put every value where
// flash_operands_store would, for head widths that are multiples of 16, rows
// in a shuffled order and several heads per 16-column run never happen.
template <class T>
void check_operand_direct(const mh::MhaDims& d) {
  SCOPED_TRACE("H " + std::to_string(d.H) + ", Hv " + std::to_string(d.Hv));
  EXPECT_FALSE(mh::flash_operands_direct(d, 1));  // k is stored transposed
  for (int which : {0, 2}) {
    const idx L = which == 0 ? d.T : d.S, W = which == 2 ? d.Hv : d.H, NW = d.N * W;
    ASSERT_EQ(mh::flash_operands_direct(d, which), W % 16 == 0);
    if (W % 16 != 0) continue;
    const idx rows = d.B * L;
    const std::vector<idx> row_map = shuffled_rows(d, L);
    mh::FlashOperands<T> direct, stored;
    mh::flash_operands_allocate(d, &direct);
    mh::flash_operands_allocate(d, &stored);
    const std::vector<idx> strips = mh::flash_operands_strips(d, which);
    ASSERT_EQ(static_cast<idx>(strips.size()), NW / 16);
    const idx block_rows = 7;
    for (idx r0 = 0; r0 < rows; r0 += block_rows) {
      const idx nr = std::min(block_rows, rows - r0);
      const std::vector<T> block = labelled_block<T>(row_map, r0, nr, NW);
      mh::flash_operands_store(d, which, r0, nr, row_map.data(), block.data(), &stored);
      std::vector<T*> dest(static_cast<size_t>(nr));
      mh::flash_operands_rows(d, which, r0, nr, row_map.data(), &direct, dest.data());
      for (idx i = 0; i < nr; ++i)
        for (idx c = 0; c < NW; ++c) dest[i][strips[c / 16] + c % 16] = block[i * NW + c];
    }
    const mh::Buffer<T>& a = which == 0 ? direct.q : direct.v;
    const mh::Buffer<T>& b = which == 0 ? stored.q : stored.v;
    ASSERT_EQ(a.size(), b.size());
    int wrong = 0;
    for (size_t i = 0; i < a.size(); ++i) wrong += a[i] != b[i];
    EXPECT_EQ(wrong, 0) << "operand " << which;
  }
}

TEST(FlashAttention, DirectOperandRowsMatchTheStore) {
  for (idx H : {16, 32, 12}) {
    for (idx Hv : {48, 16, 20}) {
      const mh::MhaDims d = mhtest::dims(3, 2, 37, 29, H, Hv);
      check_operand_direct<float>(d);
      check_operand_direct<double>(d);
    }
  }
}

TEST(FlashAttention, OperandStoreForAnyBlocksAndRowOrder) {
  for (idx H : {3, 8, 20}) {
    const mh::MhaDims d = mhtest::dims(3, 2, 37, 300, H, 12);
    for (idx block_rows : {1, 7, 64, 1000}) {
      check_operand_store<float>(d, block_rows);
      check_operand_store<double>(d, block_rows);
    }
  }
}

}  // namespace

#endif  // __has_include("flash_attention.h")
