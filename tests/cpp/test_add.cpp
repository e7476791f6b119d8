// Elementwise sum of k tensors (add.h).
#include "add.h"
#include "test_util.h"

namespace {

using mh::idx;

TEST(Add, SumsInputsInOrder) {
  const idx n = 40000;  // above the serial threshold: several blocks
  const auto a = mhtest::random_values<float>(n, 1), b = mhtest::random_values<float>(n, 2),
             c = mhtest::random_values<float>(n, 3);
  for (int threads : {1, 2}) {
    std::vector<float> y(static_cast<size_t>(n));
    mh::add_forward(std::vector<const float*>{a.data()}, n, y.data(), threads);
    EXPECT_EQ(y, a);
    mh::add_forward(std::vector<const float*>{a.data(), b.data(), c.data()}, n, y.data(), threads);
    for (idx i = 0; i < n; ++i) ASSERT_EQ(y[i], (a[i] + b[i]) + c[i]) << i;
  }
}

}  // namespace
