// Embedding lookup (embedding.h) against naive gathers and scatter-adds.
#include "embedding.h"
#include "test_util.h"

namespace {

using mh::idx;

TEST(Embedding, ForwardGathersAndBackwardScatterAdds) {
  const idx V = 5, D = 70;  // D spans two column bands of the backward pass
  const std::vector<int32_t> ids = {3, 0, 3, 4, 3, 1};  // id 2 never seen, 3 repeated
  const idx n = static_cast<idx>(ids.size());
  const auto table = mhtest::random_values<double>(V * D, 1),
             dout = mhtest::random_values<double>(n * D, 2);
  std::vector<double> out(static_cast<size_t>(n * D)), ref(out.size());
  for (idx i = 0; i < n; ++i)
    for (idx j = 0; j < D; ++j) ref[i * D + j] = table[ids[i] * D + j];
  mh::embedding_forward(ids.data(), n, table.data(), V, D, out.data(), 2);
  EXPECT_TRUE(mhtest::bitwise_equal(out, ref));

  std::vector<double> dtable(static_cast<size_t>(V * D), 99.0), dref(dtable.size(), 0.0);
  for (idx i = 0; i < n; ++i)
    for (idx j = 0; j < D; ++j) dref[ids[i] * D + j] += dout[i * D + j];
  mh::embedding_backward(ids.data(), n, dout.data(), V, D, dtable.data(), 2);
  EXPECT_TRUE(mhtest::bitwise_equal(dtable, dref));
}

}  // namespace
