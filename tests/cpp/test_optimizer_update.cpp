// Fused optimizer updates (optimizer_update.h): each rule against its
// formulas written out per element (plain loops, one operation per
// statement), bitwise equality across thread counts, in place versus fresh
// outputs, nullptr slots as zeros, and the argument checks.
#include <cmath>
#include <stdexcept>
#include <vector>

#include "optimizer_update.h"
#include "test_util.h"

namespace {

using mh::idx;
using Vec = std::vector<double>;

// Variables of these sizes: empty, tiny, one run, several runs, and one
// above the serial threshold (2^18 elements) spanning several tasks.
const std::vector<idx> kSizes = {0, 3, 256, 1000, 262147};

struct State {
  std::vector<Vec> w, g, slot[3];
};

State random_state(uint64_t seed, bool with_slots) {
  State s;
  for (size_t k = 0; k < kSizes.size(); ++k) {
    const idx n = kSizes[k];
    s.w.push_back(mhtest::random_values<double>(n, seed + 10 * k));
    s.g.push_back(mhtest::random_values<double>(n, seed + 10 * k + 1, -3.0, 3.0));
    // Slot ranges that keep every square root's argument positive: slot 1
    // (Adam's velocity, RMSprop's average gradient) in [0, 0.1), slot 0
    // (RMSprop's velocity) in [0.5, 1.5), so v - a^2 > 0 after a step.
    const double lo[3] = {0.5, 0.0, 0.0}, hi[3] = {1.5, 0.1, 1.0};
    for (int j = 0; j < 3; ++j) {
      s.slot[j].push_back(with_slots ? mhtest::random_values<double>(n, seed + 10 * k + 2 + j, lo[j], hi[j])
                                     : Vec(n, 0.0));
    }
  }
  return s;
}

// Fresh outputs for `in` (same sizes); variables pointing at them.
std::vector<mh::OptimizerVariable> bind(const State& in, State& out, bool slots_given) {
  out = in;
  std::vector<mh::OptimizerVariable> vars(in.w.size());
  for (size_t k = 0; k < vars.size(); ++k) {
    auto& v = vars[k];
    v.n = static_cast<idx>(in.w[k].size());
    v.weight = in.w[k].data();
    v.grad = in.g[k].data();
    v.weight_out = out.w[k].data();
    for (int j = 0; j < 3; ++j) {
      v.slot[j] = slots_given ? in.slot[j][k].data() : nullptr;
      v.slot_out[j] = out.slot[j][k].data();
    }
  }
  return vars;
}

// The same variables updated in place (outputs are the inputs).
std::vector<mh::OptimizerVariable> bind_in_place(State& s) {
  std::vector<mh::OptimizerVariable> vars(s.w.size());
  for (size_t k = 0; k < vars.size(); ++k) {
    auto& v = vars[k];
    v.n = static_cast<idx>(s.w[k].size());
    v.weight = s.w[k].data();
    v.grad = s.g[k].data();
    v.weight_out = s.w[k].data();
    for (int j = 0; j < 3; ++j) {
      v.slot[j] = s.slot[j][k].data();
      v.slot_out[j] = s.slot[j][k].data();
    }
  }
  return vars;
}

void expect_state_close(const State& a, const State& e, const mh::SlotUse& use, const char* what) {
  for (size_t k = 0; k < a.w.size(); ++k) {
    mhtest::expect_close(a.w[k], e.w[k], 1e-14, what);
    for (int j = 0; j < 3; ++j)
      if (use.used[j]) mhtest::expect_close(a.slot[j][k], e.slot[j][k], 1e-14, what);
  }
}

void expect_state_bitwise(const State& a, const State& e, const mh::SlotUse& use, const char* what) {
  for (size_t k = 0; k < a.w.size(); ++k) {
    EXPECT_TRUE(mhtest::bitwise_equal(a.w[k], e.w[k])) << what << ", weight " << k;
    for (int j = 0; j < 3; ++j) {
      if (use.used[j]) {
        EXPECT_TRUE(mhtest::bitwise_equal(a.slot[j][k], e.slot[j][k])) << what << ", slot " << j;
      }
    }
  }
}

double decayed(double w, const mh::WeightDecay& d, double lr) {
  if (!d.on) return w;
  const double a = w * d.weight_decay;
  const double b = a * lr;
  return w - b;
}

// --- references: one element at a time ------------------------------------

State sgd_reference(const State& in, const mh::SgdParams& p) {
  State out = in;
  for (size_t k = 0; k < in.w.size(); ++k) {
    for (size_t i = 0; i < in.w[k].size(); ++i) {
      const double w = decayed(in.w[k][i], p.decay, p.learning_rate), g = in.g[k][i];
      const double step = g * p.learning_rate;
      if (p.momentum == 0) {
        out.w[k][i] = w - step;
        continue;
      }
      const double m = in.slot[0][k][i] * p.momentum - step;
      out.slot[0][k][i] = m;
      if (p.nesterov) {
        const double look = m * p.momentum - step;
        out.w[k][i] = w + look;
      } else {
        out.w[k][i] = w + m;
      }
    }
  }
  return out;
}

State adam_reference(const State& in, const mh::AdamParams& p) {
  State out = in;
  for (size_t k = 0; k < in.w.size(); ++k) {
    for (size_t i = 0; i < in.w[k].size(); ++i) {
      const double w = decayed(in.w[k][i], p.decay, p.learning_rate), g = in.g[k][i];
      const double m0 = in.slot[0][k][i], v0 = in.slot[1][k][i];
      const double dm = (g - m0) * (1 - p.beta_1);
      const double m = m0 + dm;
      const double g2 = g * g;
      const double dv = (g2 - v0) * (1 - p.beta_2);
      double v = v0 + dv;
      out.slot[0][k][i] = m;
      out.slot[1][k][i] = v;
      if (p.amsgrad) {
        v = std::max(in.slot[2][k][i], v);
        out.slot[2][k][i] = v;
      }
      const double num = m * p.alpha;
      const double den = std::sqrt(v) + p.epsilon;
      out.w[k][i] = w - num / den;
    }
  }
  return out;
}

State rmsprop_reference(const State& in, const mh::RmspropParams& p) {
  State out = in;
  for (size_t k = 0; k < in.w.size(); ++k) {
    for (size_t i = 0; i < in.w[k].size(); ++i) {
      const double w = decayed(in.w[k][i], p.decay, p.learning_rate), g = in.g[k][i];
      const double keep = p.rho * in.slot[0][k][i];
      const double g2 = g * g;
      const double add = (1 - p.rho) * g2;
      const double v = keep + add;
      out.slot[0][k][i] = v;
      double d = v + p.epsilon;
      if (p.centered) {
        const double a_keep = p.rho * in.slot[1][k][i];
        const double a_add = (1 - p.rho) * g;
        const double a = a_keep + a_add;
        out.slot[1][k][i] = a;
        const double a2 = a * a;
        const double centred = v - a2;
        d = centred + p.epsilon;
      }
      const double lg = p.learning_rate * g;
      const double inc = lg / std::sqrt(d);
      if (p.momentum > 0) {
        const double mk = p.momentum * in.slot[2][k][i];
        const double m = mk + inc;
        out.slot[2][k][i] = m;
        out.w[k][i] = w - m;
      } else {
        out.w[k][i] = w - inc;
      }
    }
  }
  return out;
}

// Runs `update` on `in` with 1 and 2 threads (fresh outputs), in place, and
// with nullptr slots when `in`'s slots are zeros; checks against `ref`.
template <class P, class Update>
void check_rule(const State& in, const P& p, const mh::SlotUse& use, const State& ref, Update update,
                bool zero_slots, const char* what) {
  State one, two;
  update(p, bind(in, one, true), 1);
  update(p, bind(in, two, true), 2);
  expect_state_close(one, ref, use, what);
  expect_state_bitwise(two, one, use, what);
  State inplace = in;
  update(p, bind_in_place(inplace), 2);
  expect_state_bitwise(inplace, one, use, what);
  if (zero_slots) {
    State fresh;
    update(p, bind(in, fresh, false), 2);
    expect_state_bitwise(fresh, one, use, what);
  }
}

TEST(OptimizerUpdate, SgdPlainMomentumNesterovAndDecay) {
  for (bool zero : {true, false}) {
    const State in = random_state(zero ? 100 : 200, !zero);
    for (double momentum : {0.0, 0.9}) {
      for (bool nesterov : {false, true}) {
        for (bool decay : {false, true}) {
          mh::SgdParams p;
          p.learning_rate = 0.05;
          p.momentum = momentum;
          p.nesterov = nesterov;
          p.decay.on = decay;
          p.decay.weight_decay = 0.1;
          check_rule(in, p, mh::sgd_slots(p), sgd_reference(in, p), mh::sgd_update, zero, "sgd");
        }
      }
    }
  }
}

TEST(OptimizerUpdate, AdamAmsgradAndDecoupledDecay) {
  for (bool zero : {true, false}) {
    const State in = random_state(zero ? 300 : 400, !zero);
    for (bool amsgrad : {false, true}) {
      for (bool decay : {false, true}) {
        mh::AdamParams p;
        p.learning_rate = 0.01;
        p.beta_1 = 0.8;
        p.beta_2 = 0.99;
        p.epsilon = 1e-6;
        const double t = 3;
        p.alpha = p.learning_rate * std::sqrt(1 - std::pow(p.beta_2, t)) / (1 - std::pow(p.beta_1, t));
        p.amsgrad = amsgrad;
        p.decay.on = decay;
        p.decay.weight_decay = 0.004;
        check_rule(in, p, mh::adam_slots(p), adam_reference(in, p), mh::adam_update, zero, "adam");
      }
    }
  }
}

TEST(OptimizerUpdate, RmspropCenteredMomentumAndDecay) {
  for (bool zero : {true, false}) {
    const State in = random_state(zero ? 500 : 600, !zero);
    for (bool centered : {false, true}) {
      for (double momentum : {0.0, 0.5}) {
        for (bool decay : {false, true}) {
          mh::RmspropParams p;
          p.learning_rate = 0.01;
          p.rho = 0.7;
          p.momentum = momentum;
          p.centered = centered;
          p.decay.on = decay;
          p.decay.weight_decay = 0.02;
          check_rule(in, p, mh::rmsprop_slots(p), rmsprop_reference(in, p), mh::rmsprop_update, zero,
                     "rmsprop");
        }
      }
    }
  }
}

TEST(OptimizerUpdate, WeightDecayOfZeroIsNotOff) {
  // -0 - (-0 * 0) * lr is +0: "on" with 0 differs from "off" exactly there.
  State in;
  in.w = {Vec{-0.0, 1.5}};
  in.g = {Vec{0.0, 0.0}};
  for (auto& s : in.slot) s = {Vec{0.0, 0.0}};
  mh::SgdParams p;
  p.learning_rate = 0.1;
  State off, on;
  mh::sgd_update(p, bind(in, off, true), 1);
  p.decay.on = true;
  p.decay.weight_decay = 0;
  mh::sgd_update(p, bind(in, on, true), 1);
  EXPECT_TRUE(std::signbit(off.w[0][0]));
  EXPECT_FALSE(std::signbit(on.w[0][0]));
  EXPECT_EQ(on.w[0][1], 1.5);
}

TEST(OptimizerUpdate, AmsgradMaximumKeepsNaN) {
  State in;
  in.w = {Vec{1.0, 1.0}};
  in.g = {Vec{0.5, 0.5}};
  in.slot[0] = {Vec{0.0, 0.0}};
  in.slot[1] = {Vec{0.0, 0.0}};
  in.slot[2] = {Vec{std::nan(""), 0.0}};
  mh::AdamParams p;
  p.alpha = 0.001;
  p.amsgrad = true;
  State out;
  mh::adam_update(p, bind(in, out, true), 1);
  EXPECT_TRUE(std::isnan(out.slot[2][0][0]));
  EXPECT_TRUE(std::isnan(out.w[0][0]));
  EXPECT_EQ(out.slot[2][0][1], out.slot[1][0][1]);
}

TEST(OptimizerUpdate, MissingArraysAreErrorsBeforeAnyWrite) {
  State in = random_state(700, true);
  State out;
  auto vars = bind(in, out, true);
  const Vec before = out.w[1];
  mh::AdamParams p;
  p.alpha = 0.1;
  p.amsgrad = true;
  vars[2].slot_out[2] = nullptr;
  EXPECT_THROW(mh::adam_update(p, vars, 1), std::invalid_argument);
  EXPECT_TRUE(mhtest::bitwise_equal(out.w[1], before));
  vars = bind(in, out, true);
  vars[1].grad = nullptr;
  EXPECT_THROW(mh::sgd_update(mh::SgdParams{}, vars, 1), std::invalid_argument);
  vars = bind(in, out, true);
  vars[3].n = -1;
  EXPECT_THROW(mh::rmsprop_update(mh::RmspropParams{}, vars, 1), std::invalid_argument);
  // a slot the parameters do not use may be missing
  vars = bind(in, out, true);
  for (auto& v : vars) v.slot_out[2] = nullptr;
  EXPECT_NO_THROW(mh::rmsprop_update(mh::RmspropParams{}, vars, 1));
  // no variables: nothing to do
  EXPECT_NO_THROW(mh::sgd_update(mh::SgdParams{}, {}, 2));
}

}  // namespace
