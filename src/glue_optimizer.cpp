// Fused optimizer updates (core/optimizer_update.h) on R's lists of weights,
// gradients and slots (R/optimizers.R, optimizer_fused_apply()).
//
// The results are FRESH R vectors (each with the attributes of the array it
// replaces: the old slot's, or the weight's for a slot's first step); the
// inputs are never written. The weights and slots given here are bound
// elsewhere too (the layers' `variables`, the optimizer's `slots`, anything a
// user kept from them), so writing in place would change values that R's
// copy-on-modify semantics promise are unchanged. bench/optimizer-update.R
// measures what the fresh vectors cost.
#include <Rcpp.h>

#include <string>
#include <vector>

#include "core/optimizer_update.h"
#include "glue_convert.h"

namespace {

double param_number(const Rcpp::List& params, const char* name) {
  if (!params.containsElementNamed(name)) throw multihead_error(std::string("internal: no parameter ") + name);
  SEXP x = params[name];
  if (!Rf_isNumeric(x) || Rf_xlength(x) != 1) throw multihead_error(std::string("internal: parameter ") + name);
  return Rf_asReal(x);
}

bool param_flag(const Rcpp::List& params, const char* name) {
  if (!params.containsElementNamed(name)) throw multihead_error(std::string("internal: no parameter ") + name);
  SEXP x = params[name];
  if (!Rf_isLogical(x) || Rf_xlength(x) != 1 || LOGICAL(x)[0] == NA_LOGICAL) {
    throw multihead_error(std::string("internal: parameter ") + name);
  }
  return LOGICAL(x)[0] != 0;
}

// weight_decay: NULL (off) or a number.
mh::WeightDecay param_decay(const Rcpp::List& params) {
  mh::WeightDecay d;
  if (params.containsElementNamed("weight_decay") && !Rf_isNull(params["weight_decay"])) {
    d.on = true;
    d.weight_decay = param_number(params, "weight_decay");
  }
  return d;
}

std::string position(R_xlen_t k) { return std::to_string(static_cast<long long>(k) + 1); }

// A fresh double vector like `like` (its attributes), for the core to fill.
SEXP fresh_like(SEXP like, R_xlen_t n) {
  Rcpp::NumericVector out = mhglue::fresh_numeric(n);
  SHALLOW_DUPLICATE_ATTRIB(out, like);
  return out;
}

// The rule and its parameters, parsed from R.
struct Rule {
  std::string name;
  mh::SlotUse use;
  mh::SgdParams sgd;
  mh::AdamParams adam;
  mh::RmspropParams rms;
};

Rule parse_rule(const std::string& name, const Rcpp::List& params) {
  Rule r;
  r.name = name;
  const double lr = param_number(params, "learning_rate");
  const mh::WeightDecay decay = param_decay(params);
  if (name == "sgd") {
    r.sgd.learning_rate = lr;
    r.sgd.momentum = param_number(params, "momentum");
    r.sgd.nesterov = param_flag(params, "nesterov");
    r.sgd.decay = decay;
    r.use = mh::sgd_slots(r.sgd);
  } else if (name == "adam") {
    r.adam.learning_rate = lr;
    r.adam.alpha = param_number(params, "alpha");
    r.adam.beta_1 = param_number(params, "beta_1");
    r.adam.beta_2 = param_number(params, "beta_2");
    r.adam.epsilon = param_number(params, "epsilon");
    r.adam.amsgrad = param_flag(params, "amsgrad");
    r.adam.decay = decay;
    r.use = mh::adam_slots(r.adam);
  } else if (name == "rmsprop") {
    r.rms.learning_rate = lr;
    r.rms.rho = param_number(params, "rho");
    r.rms.momentum = param_number(params, "momentum");
    r.rms.epsilon = param_number(params, "epsilon");
    r.rms.centered = param_flag(params, "centered");
    r.rms.decay = decay;
    r.use = mh::rmsprop_slots(r.rms);
  } else {
    throw multihead_error("internal: unknown optimizer rule \"" + name + "\"");
  }
  return r;
}

// Checks the lists (see cpp_optimizer_update()) and returns the variables
// with their inputs set (outputs not yet).
std::vector<mh::OptimizerVariable> input_variables(const Rule& rule, const Rcpp::List& weights,
                                                   const Rcpp::List& grads, const Rcpp::List& slots) {
  const R_xlen_t nv = weights.size();
  if (grads.size() != nv) throw multihead_error("multihead: optimizer update: one gradient per weight is needed.");
  if (slots.size() != 3) throw multihead_error("internal: `slots` must have 3 positions");
  for (int s = 0; s < 3; ++s) {
    SEXP sl = slots[s];
    if (!rule.use.used[s] && !Rf_isNull(sl)) throw multihead_error("internal: a slot the rule does not use was given");
    if (rule.use.used[s] && (TYPEOF(sl) != VECSXP || Rf_xlength(sl) != nv)) {
      throw multihead_error("internal: a used slot needs one entry per variable");
    }
  }
  std::vector<mh::OptimizerVariable> vars(static_cast<size_t>(nv));
  for (R_xlen_t k = 0; k < nv; ++k) {
    SEXP w = weights[k], g = grads[k];
    if (TYPEOF(w) != REALSXP) {
      throw multihead_error("multihead: optimizer update: weight " + position(k) + " is not a double array.");
    }
    if (TYPEOF(g) != REALSXP || Rf_xlength(g) != Rf_xlength(w)) {
      throw multihead_error("multihead: optimizer update: gradient " + position(k) +
                            " is not a double array with as many elements as its weight.");
    }
    mh::OptimizerVariable& v = vars[static_cast<size_t>(k)];
    for (int s = 0; s < 3; ++s) {
      if (!rule.use.used[s]) continue;
      SEXP sv = VECTOR_ELT(slots[s], k);
      if (!Rf_isNull(sv) && (TYPEOF(sv) != REALSXP || Rf_xlength(sv) != Rf_xlength(w))) {
        throw multihead_error("multihead: optimizer update: slot " + std::to_string(s + 1) + " of variable " +
                              position(k) + " is not a double array with as many elements as its weight.");
      }
      v.slot[s] = Rf_isNull(sv) ? nullptr : REAL(sv);
    }
    v.n = static_cast<mh::idx>(Rf_xlength(w));
    v.weight = REAL(w);
    v.grad = REAL(g);
  }
  return vars;
}

// No R API here: the core runs on the pointers only.
void run_rule(const Rule& rule, const std::vector<mh::OptimizerVariable>& vars, int threads) {
  if (rule.name == "sgd") {
    mh::sgd_update(rule.sgd, vars, threads);
  } else if (rule.name == "adam") {
    mh::adam_update(rule.adam, vars, threads);
  } else {
    mh::rmsprop_update(rule.rms, vars, threads);
  }
}

}  // namespace

// One step of `rule` ("sgd", "adam" or "rmsprop") on every variable.
//   weights, grads  lists of double arrays, one per variable, equal lengths
//   slots           list of 3 (the rule's slot positions, core/optimizer_update.h):
//                   NULL for a position the rule does not use, else a list with
//                   one entry per variable: its double array, or NULL (zeros:
//                   the slot's first step)
//   params          named list: learning_rate, weight_decay (NULL or number)
//                   and the rule's own (sgd: momentum, nesterov; adam: alpha,
//                   beta_1, beta_2, epsilon, amsgrad; rmsprop: rho, momentum,
//                   epsilon, centered)
//   round32         NULL (none), or a logical per variable: TRUE rounds that
//                   variable's updated weight to float32 (a float32 layer's
//                   weight as store_weight() keeps it; the slots stay double)
// Returns list(weights = list of fresh arrays, slots = list of 3, NULL or
// a list of fresh arrays, for the positions used).
// [[Rcpp::export]]
Rcpp::List cpp_optimizer_update(std::string rule, Rcpp::List weights, Rcpp::List grads, Rcpp::List slots,
                                Rcpp::List params, int threads, SEXP round32 = R_NilValue) {
  const Rule r = parse_rule(rule, params);
  std::vector<mh::OptimizerVariable> vars = input_variables(r, weights, grads, slots);
  const R_xlen_t nv = weights.size();
  if (!Rf_isNull(round32) && (TYPEOF(round32) != LGLSXP || Rf_xlength(round32) != nv)) {
    throw multihead_error("internal: `round32` needs one flag per variable");
  }
  Rcpp::List w_out(nv);
  Rcpp::List s_out(3);
  for (int s = 0; s < 3; ++s)
    if (r.use.used[s]) s_out[s] = Rcpp::List(nv);
  for (R_xlen_t k = 0; k < nv; ++k) {
    SEXP w = weights[k];
    const R_xlen_t n = Rf_xlength(w);
    mh::OptimizerVariable& v = vars[static_cast<size_t>(k)];
    SEXP wo = fresh_like(w, n);
    SET_VECTOR_ELT(w_out, k, wo);  // protected from here on
    v.weight_out = REAL(wo);
    v.round_float32 = !Rf_isNull(round32) && LOGICAL_RO(round32)[k] == TRUE;
    for (int s = 0; s < 3; ++s) {
      if (!r.use.used[s]) continue;
      SEXP sv = VECTOR_ELT(slots[s], k);
      SEXP so = fresh_like(Rf_isNull(sv) ? w : sv, n);
      SET_VECTOR_ELT(s_out[s], k, so);
      v.slot_out[s] = REAL(so);
    }
  }
  run_rule(r, vars, threads);
  return Rcpp::List::create(Rcpp::Named("weights") = w_out, Rcpp::Named("slots") = s_out);
}

// FOR BENCHMARKS ONLY (bench/optimizer-update.R): the same step written INTO
// the given weight and slot arrays (every used slot must be given). This
// breaks R's value semantics for every other binding of those arrays: the
// caller must own them (fresh copies no one else sees). The package itself
// never calls it.
// [[Rcpp::export]]
void cpp_optimizer_update_in_place(std::string rule, Rcpp::List weights, Rcpp::List grads, Rcpp::List slots,
                                   Rcpp::List params, int threads) {
  const Rule r = parse_rule(rule, params);
  std::vector<mh::OptimizerVariable> vars = input_variables(r, weights, grads, slots);
  for (size_t k = 0; k < vars.size(); ++k) {
    mh::OptimizerVariable& v = vars[k];
    v.weight_out = REAL(VECTOR_ELT(weights, static_cast<R_xlen_t>(k)));
    for (int s = 0; s < 3; ++s) {
      if (!r.use.used[s]) continue;
      if (!v.slot[s]) throw multihead_error("internal: an in-place update needs every slot");
      v.slot_out[s] = const_cast<double*>(v.slot[s]);
    }
  }
  run_rule(r, vars, threads);
}
