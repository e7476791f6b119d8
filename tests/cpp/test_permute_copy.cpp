// permute_copy (permute.h) against naive index arithmetic.
#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "permute.h"
#include "test_util.h"

namespace {

using mh::idx;

// dst[j] for column-major dst with dims sdim[perm[k]]: decompose j into dst
// indices i_k (axis 0 fastest); src axis perm[k] takes index i_k.
template <class S, class D>
std::vector<D> naive_permute(const std::vector<S>& src, const std::vector<idx>& sdim,
                             const std::vector<int>& perm) {
  const size_t rank = sdim.size();
  std::vector<idx> sstride(rank);
  for (size_t a = 0; a < rank; ++a) sstride[a] = a == 0 ? 1 : sstride[a - 1] * sdim[a - 1];
  std::vector<D> dst(src.size());
  for (size_t j = 0; j < dst.size(); ++j) {
    idx rest = static_cast<idx>(j), offset = 0;
    for (size_t k = 0; k < rank; ++k) {
      const idx n = sdim[perm[k]];
      offset += (rest % n) * sstride[perm[k]];
      rest /= n;
    }
    dst[j] = static_cast<D>(src[offset]);
  }
  return dst;
}

idx product(const std::vector<idx>& dims) {
  idx n = 1;
  for (idx v : dims) n *= v;
  return n;
}

template <class S, class D>
void check_permutation(const std::vector<idx>& sdim, const std::vector<int>& perm, uint64_t seed) {
  const idx n = product(sdim);
  std::vector<S> src(static_cast<size_t>(n));
  auto vals = mhtest::random_values<double>(n, seed, -100, 100);
  for (idx i = 0; i < n; ++i) src[i] = static_cast<S>(vals[i]);
  std::vector<D> dst(static_cast<size_t>(n), D(-12345));
  mh::permute_copy(src.data(), sdim, perm, dst.data());
  const std::vector<D> expected = naive_permute<S, D>(src, sdim, perm);
  EXPECT_TRUE(mhtest::bitwise_equal(dst, expected)) << "rank " << sdim.size();
}

// Every permutation of the axes of `sdim`.
template <class S, class D>
void check_all_permutations(const std::vector<idx>& sdim) {
  std::vector<int> perm(sdim.size());
  std::iota(perm.begin(), perm.end(), 0);
  uint64_t seed = 1;
  do {
    check_permutation<S, D>(sdim, perm, seed++);
  } while (std::next_permutation(perm.begin(), perm.end()));
}

TEST(PermuteCopy, EveryPermutationUpToRank4) {
  check_all_permutations<double, double>({7});
  check_all_permutations<double, double>({3, 5});
  check_all_permutations<double, float>({2, 3, 4});
  check_all_permutations<float, double>({2, 3, 4, 5});
}

TEST(PermuteCopy, ConvertsTypes) {
  check_permutation<int32_t, double>({4, 3, 2}, {2, 0, 1}, 11);
  check_permutation<int32_t, int32_t>({4, 3, 2}, {1, 2, 0}, 12);
  check_permutation<double, float>({5, 6}, {1, 0}, 13);
  // double -> float rounds to nearest like static_cast.
  const std::vector<double> src = {1.0 / 3.0, -2.5e-8, 1e30};
  std::vector<float> dst(3);
  mh::permute_copy(src.data(), std::vector<idx>{3}, std::vector<int>{0}, dst.data());
  EXPECT_EQ(dst[0], static_cast<float>(1.0 / 3.0));
  EXPECT_EQ(dst[1], static_cast<float>(-2.5e-8));
  EXPECT_EQ(dst[2], static_cast<float>(1e30));
}

TEST(PermuteCopy, UnitAxesHighRankAndLargeOddShapes) {
  check_permutation<double, double>({3, 1, 2, 1, 4}, {4, 1, 0, 3, 2}, 21);
  check_permutation<double, double>({1, 1, 1}, {2, 1, 0}, 22);
  check_permutation<double, double>({2, 3, 2, 3, 2, 2}, {5, 3, 1, 0, 2, 4}, 23);
  // Larger than a cache block, odd sizes: the R glue's (B, T, E) <-> row-major.
  check_permutation<double, float>({37, 65, 3}, {2, 1, 0}, 24);
  check_permutation<float, double>({129, 3, 70}, {1, 2, 0}, 25);
}

TEST(PermuteCopy, RankZeroCopiesOneElement) {
  const double src = 4.25;
  float dst = 0;
  mh::permute_copy(&src, std::vector<idx>{}, std::vector<int>{}, &dst);
  EXPECT_EQ(dst, 4.25f);
}

TEST(PermuteCopy, ZeroLengthAxisWritesNothing) {
  const std::vector<double> src;  // no elements
  std::vector<double> dst(4, 7.0);
  mh::permute_copy(src.data(), std::vector<idx>{3, 0, 2}, std::vector<int>{2, 0, 1}, dst.data());
  EXPECT_EQ(dst, std::vector<double>(4, 7.0));
}

TEST(PermuteCopy, InvalidPermutationsThrow) {
  const std::vector<double> src(6, 1.0);
  std::vector<double> dst(6);
  const std::vector<idx> dims = {2, 3};
  EXPECT_THROW(mh::permute_copy(src.data(), dims, std::vector<int>{0}, dst.data()),
               std::invalid_argument);
  EXPECT_THROW(mh::permute_copy(src.data(), dims, std::vector<int>{0, 0}, dst.data()),
               std::invalid_argument);
  EXPECT_THROW(mh::permute_copy(src.data(), dims, std::vector<int>{0, 2}, dst.data()),
               std::invalid_argument);
  EXPECT_THROW(mh::permute_copy(src.data(), dims, std::vector<int>{-1, 1}, dst.data()),
               std::invalid_argument);
  EXPECT_THROW(
      mh::permute_copy(src.data(), std::vector<idx>{2, -3}, std::vector<int>{1, 0}, dst.data()),
      std::invalid_argument);
}

}  // namespace
