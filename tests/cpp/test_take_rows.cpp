// Samples along the first axis of a column-major array (take_rows.h).
#include "take_rows.h"
#include "test_util.h"

namespace {

using mh::idx;

// out[j + k*c] = x[rows[j] + n*c], written out with plain loops.
std::vector<double> reference(const std::vector<double>& x, idx n, idx cols,
                              const std::vector<int32_t>& rows) {
  const idx k = static_cast<idx>(rows.size());
  std::vector<double> out(static_cast<size_t>(k * cols));
  for (idx c = 0; c < cols; ++c)
    for (idx j = 0; j < k; ++j) out[static_cast<size_t>(j + k * c)] = x[static_cast<size_t>(rows[j] + n * c)];
  return out;
}

TEST(TakeRows, ContiguousShuffledAndRepeatedRowsOnAnyThreadCount) {
  const idx n = 50, cols = 9000;  // above the serial threshold: several tasks
  const auto x = mhtest::random_values<double>(n * cols, 7);
  const std::vector<std::vector<int32_t>> cases = {
      {10, 11, 12, 13, 14}, {49, 0, 7, 7, 23, 1}, {3}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}};
  for (const auto& rows : cases) {
    const auto want = reference(x, n, cols, rows);
    for (int threads : {1, 2, 3}) {
      std::vector<double> out(want.size(), -1.0);
      mh::take_rows_colmajor(x.data(), n, cols, rows.data(), static_cast<idx>(rows.size()), out.data(),
                             threads);
      EXPECT_EQ(out, want) << "threads " << threads;
    }
  }
}

TEST(TakeRows, IntegersAndEmptyShapes) {
  const std::vector<int> x = {1, 2, 3, 4, 5, 6};  // n = 3, cols = 2
  const std::vector<int32_t> rows = {2, 0};
  std::vector<int> out(4, 0);
  mh::take_rows_colmajor(x.data(), 3, 2, rows.data(), 2, out.data(), 1);
  EXPECT_EQ(out, (std::vector<int>{3, 1, 6, 4}));
  mh::take_rows_colmajor(x.data(), 3, 0, rows.data(), 2, out.data(), 2);  // no columns: no writes
  mh::take_rows_colmajor(x.data(), 3, 2, rows.data(), 0, out.data(), 2);  // no rows: no writes
  EXPECT_EQ(out, (std::vector<int>{3, 1, 6, 4}));
}

}  // namespace
