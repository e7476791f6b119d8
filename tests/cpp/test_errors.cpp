// Invalid arguments reach the caller as exceptions, never as a crash.
#include <stdexcept>

#include "activations.h"
#include "add.h"
#include "dropout.h"
#include "embedding.h"
#include "mha_call.h"
#include "projection.h"
#include "test_util.h"

namespace {

using mh::idx;

mh::MhaDims valid_dims() {
  mh::MhaDims d;
  d.B = 1; d.T = 2; d.S = 2; d.E = 2; d.Dk = 2; d.Dv = 2; d.N = 1; d.H = 2; d.Hv = 2; d.O = 2;
  return d;
}

TEST(Errors, MhaRejectsInvalidDimensions) {
  const std::vector<double> buf(64, 0.5);
  mh::MhaWeights<double> w;
  w.wq = w.wk = w.wv = w.wo = buf.data();
  std::vector<double> out(64);
  auto forward = [&](const mh::MhaDims& d) {
    mh::MhaCache<double> cache;
    mhtest::run_mha_forward(d, buf.data(), buf.data(), buf.data(), w, mh::AttentionMask{},
                            mh::DropoutSpec{}, false, 1, out.data(),
                            static_cast<double*>(nullptr), &cache);
  };
  forward(valid_dims());  // the valid baseline runs
  idx mh::MhaDims::*fields[] = {&mh::MhaDims::B, &mh::MhaDims::T, &mh::MhaDims::S,
                                &mh::MhaDims::E, &mh::MhaDims::Dk, &mh::MhaDims::Dv,
                                &mh::MhaDims::N, &mh::MhaDims::H, &mh::MhaDims::Hv,
                                &mh::MhaDims::O};
  for (auto field : fields) {
    mh::MhaDims d = valid_dims();
    d.*field = -1;
    EXPECT_THROW(forward(d), std::invalid_argument);
  }
  // Feature sizes and heads must be positive (batch and lengths may be 0).
  for (auto field : {&mh::MhaDims::E, &mh::MhaDims::Dk, &mh::MhaDims::Dv, &mh::MhaDims::N,
                     &mh::MhaDims::H, &mh::MhaDims::Hv, &mh::MhaDims::O}) {
    mh::MhaDims d = valid_dims();
    d.*field = 0;
    EXPECT_THROW(forward(d), std::invalid_argument);
  }
}

TEST(Errors, MhaBackwardNeedsTheForwardCache) {
  const mh::MhaDims d = valid_dims();
  const std::vector<double> buf(64, 0.5);
  std::vector<double> g(64);
  mh::MhaWeights<double> w;
  w.wq = w.wk = w.wv = w.wo = buf.data();
  mh::MhaGrads<double> gr;
  gr.dxq = gr.dxk = gr.dxv = gr.dwq = gr.dwk = gr.dwv = gr.dwo = g.data();
  mh::MhaCache<double> empty;
  EXPECT_THROW(mhtest::run_mha_backward(d, buf.data(), buf.data(), buf.data(), w,
                                        mh::AttentionMask{}, mh::DropoutSpec{}, empty, buf.data(),
                                        gr, 1),
               std::invalid_argument);
}

TEST(Errors, LayerKernelsRejectInconsistentShapes) {
  const std::vector<double> x(12, 1.0);
  std::vector<double> y(12);
  EXPECT_THROW(mh::dropout_apply(x.data(), std::vector<idx>{3, 4}, std::vector<idx>{3}, 0.5, 1,
                                 y.data(), 1),
               std::invalid_argument);
  EXPECT_THROW(mh::dropout_apply(x.data(), std::vector<idx>{3, 4}, std::vector<idx>{3, 2}, 0.5, 1,
                                 y.data(), 1),
               std::invalid_argument);
  EXPECT_THROW(mh::add_forward(std::vector<const double*>{}, 12, y.data(), 1),
               std::invalid_argument);
  EXPECT_THROW(mh::add_periodic(y.data(), 12, x.data(), 5, 1), std::invalid_argument);
  EXPECT_THROW(mh::add_periodic(y.data(), 12, x.data(), 0, 1), std::invalid_argument);
  EXPECT_THROW(mh::sum_periodic(x.data(), 12, 7, y.data(), 1), std::invalid_argument);
  EXPECT_THROW(mh::activation_from_code(-1), std::invalid_argument);
  EXPECT_THROW(mh::activation_from_code(static_cast<int>(mh::Activation::Count)),
               std::invalid_argument);
  std::vector<double> dx(12), dw(4);
  EXPECT_THROW(mh::projection_backward(x.data(), 6, 2, x.data(), 2, 2, mh::Activation::Relu,
                                       static_cast<const double*>(nullptr), x.data(), dx.data(),
                                       dw.data(), static_cast<double*>(nullptr), 1),
               std::invalid_argument);
}

TEST(Errors, EmbeddingRejectsOutOfRangeIds) {
  const std::vector<double> table(6, 1.0);  // (V = 3, D = 2)
  std::vector<double> out(8);
  for (int32_t bad : {-1, 3, 1 << 30}) {
    const std::vector<int32_t> ids = {0, 2, bad, 1};
    EXPECT_THROW(mh::embedding_forward(ids.data(), 4, table.data(), 3, 2, out.data(), 1),
                 std::out_of_range);
    std::vector<double> dtable(6);
    EXPECT_THROW(mh::embedding_backward(ids.data(), 4, out.data(), 3, 2, dtable.data(), 1),
                 std::out_of_range);
  }
}

}  // namespace
