// Fused optimizer updates: Keras 3's SGD (momentum, Nesterov), Adam (AMSGrad;
// AdamW is Adam with the weight decay below) and RMSprop (momentum, centered)
// applied to many variables in one call.
//
// DATA. Weights, gradients and slots are doubles (R keeps them as doubles;
// float32 weights are rounded by the caller after the step, as before). Each
// variable is n elements in any order shared by its weight, gradient and slot
// arrays: every rule is elementwise. A slot input of nullptr means "zeros"
// (the slot's first step). Outputs may be the same arrays as their inputs (an
// update in place) but must not overlap any other array of the call.
//
// ARITHMETIC. Every rule computes exactly the operations of the R reference
// (R/optimizers.R, itself Keras's formulas), in the same order, each rounded
// to double: the file is compiled without contraction into fused
// multiply-adds, and sqrt / division are IEEE-exact, so the results are
// bitwise those of the R code. Work is split into fixed chunks of each
// variable (boundaries from the sizes only) and every element is written by
// one chunk: bitwise identical for any thread count.
//
// WEIGHT DECAY (Keras's BaseOptimizer._apply_weight_decay), when `on`, runs
// first for every rule: w <- w - (w * weight_decay) * learning_rate. "Off"
// (R's NULL) is not weight_decay = 0, which turns -0 into +0.
#pragma once

#include <vector>

#include "layout.h"

namespace mh {

struct OptimizerVariable {
  idx n = 0;                        // elements
  const double* weight = nullptr;   // the weight before the step (n)
  const double* grad = nullptr;     // its (clipped) gradient (n)
  double* weight_out = nullptr;     // the weight after the step (n)
  bool round_float32 = false;       // weight_out rounded to float32 (a float32 variable)
  // The rule's slots by position (see each rule), before and after the step;
  // positions the rule does not use are ignored.
  const double* slot[3] = {nullptr, nullptr, nullptr};
  double* slot_out[3] = {nullptr, nullptr, nullptr};
};

struct WeightDecay {
  bool on = false;
  double weight_decay = 0;
};

// SGD. momentum == 0: w <- w - g * lr (no slot). Otherwise slot 0 is the
// momentum m: m <- m * momentum - g * lr; w <- w + m, or with nesterov
// w <- w + (m * momentum - g * lr).
struct SgdParams {
  double learning_rate = 0.01;
  double momentum = 0;
  bool nesterov = false;
  WeightDecay decay;
};

// Adam. Slots: 0 momentum m, 1 velocity v, 2 velocity_hat (amsgrad only).
// m <- m + (g - m) * (1 - beta_1); v <- v + (g * g - v) * (1 - beta_2);
// with amsgrad v_hat <- max(v_hat, v) (NaN if either is) and v <- v_hat;
// w <- w - (m * alpha) / (sqrt(v) + epsilon), where alpha = learning_rate *
// sqrt(1 - beta_2^t) / (1 - beta_1^t) at step t is the caller's (the R glue
// passes R's own value, so no pow() of another library enters).
// learning_rate is used only by the weight decay.
struct AdamParams {
  double learning_rate = 0.001;
  double alpha = 0;
  double beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7;
  bool amsgrad = false;
  WeightDecay decay;
};

// RMSprop. Slots: 0 velocity v, 1 average_gradient a (centered only),
// 2 momentum (momentum > 0 only).
// v <- rho * v + (1 - rho) * (g * g); centered: a <- rho * a + (1 - rho) * g
// and d = (v - a * a) + epsilon, else d = v + epsilon; inc = (lr * g) /
// sqrt(d); momentum > 0: mom <- momentum * mom + inc, w <- w - mom; else
// w <- w - inc.
struct RmspropParams {
  double learning_rate = 0.001;
  double rho = 0.9, momentum = 0, epsilon = 1e-7;
  bool centered = false;
  WeightDecay decay;
};

// Which slot positions a rule uses with these parameters.
struct SlotUse {
  bool used[3] = {false, false, false};
};
SlotUse sgd_slots(const SgdParams& p);
SlotUse adam_slots(const AdamParams& p);
SlotUse rmsprop_slots(const RmspropParams& p);

// One step on every variable. Throws std::invalid_argument (naming the
// variable's position) when a size is negative or an array the rule needs is
// missing, before anything is written.
void sgd_update(const SgdParams& p, const std::vector<OptimizerVariable>& vars, int threads);
void adam_update(const AdamParams& p, const std::vector<OptimizerVariable>& vars, int threads);
void rmsprop_update(const RmspropParams& p, const std::vector<OptimizerVariable>& vars, int threads);

}  // namespace mh
