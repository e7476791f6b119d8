// Fused optimizer updates (core/optimizer_update.h) on R's lists of weights,
// gradients and slots (R/optimizers.R, optimizer_fused_apply()).
//
// Weights come back as FRESH R vectors (each with the attributes of the
// array it replaces): a layer's weight array is bound elsewhere too (the
// layer's `variables`, the converted-weight cache, anything a user kept), so
// writing it in place would change values that R's copy-on-modify semantics
// promise are unchanged. The optimizer's slots are written in place when R's
// reference counts show no one else holds them (cpp_optimizer_step()), else
// fresh. bench/optimizer-update.R measures what fresh vectors cost.
#include <Rcpp.h>

#include <cstring>
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

// Checks weights and gradients (lists of double arrays, one per variable)
// and the slot inputs (slot_in[s][k]: variable k's array for the rule's
// position s, or R_NilValue: zeros) and returns the variables with their
// inputs set (outputs not yet).
std::vector<mh::OptimizerVariable> input_variables(const Rule& rule, const Rcpp::List& weights,
                                                   const Rcpp::List& grads,
                                                   const std::vector<SEXP> (&slot_in)[3]) {
  const R_xlen_t nv = weights.size();
  if (grads.size() != nv) throw multihead_error("multihead: optimizer update: one gradient per weight is needed.");
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
      SEXP sv = slot_in[s][static_cast<size_t>(k)];
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

// The slot inputs of cpp_optimizer_update()'s `slots` argument.
void list_slots(const Rule& rule, const Rcpp::List& slots, R_xlen_t nv, std::vector<SEXP> (&slot_in)[3]) {
  if (slots.size() != 3) throw multihead_error("internal: `slots` must have 3 positions");
  for (int s = 0; s < 3; ++s) {
    SEXP sl = slots[s];
    if (!rule.use.used[s] && !Rf_isNull(sl)) throw multihead_error("internal: a slot the rule does not use was given");
    if (!rule.use.used[s]) continue;
    if (TYPEOF(sl) != VECSXP || Rf_xlength(sl) != nv) {
      throw multihead_error("internal: a used slot needs one entry per variable");
    }
    slot_in[s].resize(static_cast<size_t>(nv));
    for (R_xlen_t k = 0; k < nv; ++k) slot_in[s][static_cast<size_t>(k)] = VECTOR_ELT(sl, k);
  }
}

// `round32` checked, into the variables.
void set_round32(std::vector<mh::OptimizerVariable>& vars, SEXP round32) {
  const R_xlen_t nv = static_cast<R_xlen_t>(vars.size());
  if (!Rf_isNull(round32) && (TYPEOF(round32) != LGLSXP || Rf_xlength(round32) != nv)) {
    throw multihead_error("internal: `round32` needs one flag per variable");
  }
  for (R_xlen_t k = 0; k < nv; ++k) {
    vars[static_cast<size_t>(k)].round_float32 = !Rf_isNull(round32) && LOGICAL_RO(round32)[k] == TRUE;
  }
}

// Fresh weight outputs (like each weight) into `w_out`.
void fresh_weights(const Rcpp::List& weights, std::vector<mh::OptimizerVariable>& vars, Rcpp::List& w_out) {
  for (R_xlen_t k = 0; k < weights.size(); ++k) {
    SEXP w = weights[k];
    SEXP wo = fresh_like(w, Rf_xlength(w));
    SET_VECTOR_ELT(w_out, k, wo);  // protected from here on
    vars[static_cast<size_t>(k)].weight_out = REAL(wo);
  }
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
  const R_xlen_t nv = weights.size();
  std::vector<SEXP> slot_in[3];
  list_slots(r, slots, nv, slot_in);
  std::vector<mh::OptimizerVariable> vars = input_variables(r, weights, grads, slot_in);
  set_round32(vars, round32);
  Rcpp::List w_out(nv);
  fresh_weights(weights, vars, w_out);
  Rcpp::List s_out(3);
  for (int s = 0; s < 3; ++s) {
    if (!r.use.used[s]) continue;
    Rcpp::List out(nv);
    s_out[s] = out;
    for (R_xlen_t k = 0; k < nv; ++k) {
      SEXP sv = slot_in[s][static_cast<size_t>(k)];
      SEXP so = fresh_like(Rf_isNull(sv) ? SEXP(weights[k]) : sv, Rf_xlength(weights[k]));
      SET_VECTOR_ELT(out, k, so);
      vars[static_cast<size_t>(k)].slot_out[s] = REAL(so);
    }
  }
  run_rule(r, vars, threads);
  return Rcpp::List::create(Rcpp::Named("weights") = w_out, Rcpp::Named("slots") = s_out);
}

namespace {

// Slot arrays written in place and fresh, by cpp_optimizer_step(), for tests.
double slots_in_place = 0, slots_fresh = 0;

// The element of list `x` named `name`, or R_NilValue.
SEXP named_element(SEXP x, const char* name) {
  if (TYPEOF(x) != VECSXP) return R_NilValue;
  SEXP nms = Rf_getAttrib(x, R_NamesSymbol);
  if (TYPEOF(nms) != STRSXP) return R_NilValue;
  for (R_xlen_t i = 0; i < Rf_xlength(x); ++i) {
    if (std::strcmp(CHAR(STRING_ELT(nms, i)), name) == 0) return VECTOR_ELT(x, i);
  }
  return R_NilValue;
}

// shape_of() in R: dim, or the length of a vector without one.
bool same_shape(SEXP a, SEXP b) {
  SEXP da = Rf_getAttrib(a, R_DimSymbol), db = Rf_getAttrib(b, R_DimSymbol);
  std::vector<double> sa, sb;
  if (Rf_isNull(da)) sa.push_back(static_cast<double>(Rf_xlength(a)));
  else for (R_xlen_t i = 0; i < Rf_xlength(da); ++i) sa.push_back(INTEGER(da)[i]);
  if (Rf_isNull(db)) sb.push_back(static_cast<double>(Rf_xlength(b)));
  else for (R_xlen_t i = 0; i < Rf_xlength(db); ++i) sb.push_back(INTEGER(db)[i]);
  return sa == sb;
}

// `old` (a named list, or NULL) with the elements named in `names` set to
// `values` (replaced where present, appended in order where not): a new list.
SEXP list_with(SEXP old, const std::vector<std::string>& names, const std::vector<SEXP>& values) {
  const R_xlen_t n_old = TYPEOF(old) == VECSXP ? Rf_xlength(old) : 0;
  SEXP old_names = n_old ? Rf_getAttrib(old, R_NamesSymbol) : R_NilValue;
  std::vector<std::string> out_names;
  std::vector<SEXP> out_values;
  for (R_xlen_t i = 0; i < n_old; ++i) {
    out_names.push_back(TYPEOF(old_names) == STRSXP ? CHAR(STRING_ELT(old_names, i)) : "");
    out_values.push_back(VECTOR_ELT(old, i));
  }
  for (size_t j = 0; j < names.size(); ++j) {
    size_t at = 0;
    while (at < out_names.size() && out_names[at] != names[j]) ++at;
    if (at == out_names.size()) {
      out_names.push_back(names[j]);
      out_values.push_back(values[j]);
    } else {
      out_values[at] = values[j];
    }
  }
  SEXP out = PROTECT(Rf_allocVector(VECSXP, static_cast<R_xlen_t>(out_values.size())));
  SEXP nms = PROTECT(Rf_allocVector(STRSXP, static_cast<R_xlen_t>(out_names.size())));
  for (size_t i = 0; i < out_values.size(); ++i) {
    SET_VECTOR_ELT(out, static_cast<R_xlen_t>(i), out_values[i]);
    SET_STRING_ELT(nms, static_cast<R_xlen_t>(i), Rf_mkCharCE(out_names[i].c_str(), CE_UTF8));
  }
  Rf_setAttrib(out, R_NamesSymbol, nms);
  UNPROTECT(2);
  return out;
}

}  // namespace

// One step of `rule` on every variable, with the slots kept in the optimizer
// environment `opt` (opt$slots[[kind]][[path]], R/optimizers.R): the same
// arithmetic as cpp_optimizer_update() (weights, grads, params, round32
// alike), `kinds` the rule's slot kind per position (NA: unused) and `paths`
// the variables' names. A slot array is updated IN PLACE when R's reference
// counts say nothing else can see it: opt$slots, its list for the kind and
// the array itself are each referenced once (by the environment's binding,
// by opt$slots, by that list), as R itself decides whether `x[i] <- v` may
// modify x. Anything shared (a user's copy, a list that still holds an old
// state, a slot read from a file) gets a fresh array, and the lists holding
// it are rebuilt (fresh, so the next step can write in place). Writes
// nothing, and returns list(mismatch = c(position, variable)) (1-based),
// when a kept slot's shape differs from its weight's; otherwise
// list(weights = fresh arrays).
// [[Rcpp::export]]
Rcpp::List cpp_optimizer_step(std::string rule, Rcpp::List weights, Rcpp::List grads, SEXP opt,
                              Rcpp::CharacterVector kinds, Rcpp::CharacterVector paths, Rcpp::List params,
                              int threads, SEXP round32 = R_NilValue) {
  const Rule r = parse_rule(rule, params);
  const R_xlen_t nv = weights.size();
  if (TYPEOF(opt) != ENVSXP) throw multihead_error("internal: `opt` must be the optimizer's environment");
  if (kinds.size() != 3 || paths.size() != nv) throw multihead_error("internal: `kinds` or `paths` of the wrong length");
  SEXP slots_sym = Rf_install("slots");
  SEXP all = Rf_findVarInFrame(opt, slots_sym);
  if (all == R_UnboundValue) all = R_NilValue;
  if (!Rf_isNull(all) && TYPEOF(all) != VECSXP) throw multihead_error("internal: opt$slots is not a list");
  std::vector<SEXP> slot_in[3];
  SEXP container[3] = {R_NilValue, R_NilValue, R_NilValue};
  for (int s = 0; s < 3; ++s) {
    if (!r.use.used[s]) continue;
    if (STRING_ELT(kinds, s) == NA_STRING) throw multihead_error("internal: a used slot has no kind");
    container[s] = named_element(all, CHAR(STRING_ELT(kinds, s)));
    slot_in[s].resize(static_cast<size_t>(nv));
    for (R_xlen_t k = 0; k < nv; ++k) {
      SEXP sv = named_element(container[s], CHAR(STRING_ELT(paths, k)));
      if (!Rf_isNull(sv) && !same_shape(sv, weights[k])) {
        return Rcpp::List::create(Rcpp::Named("mismatch") = Rcpp::IntegerVector::create(s + 1, k + 1));
      }
      slot_in[s][static_cast<size_t>(k)] = sv;
    }
  }
  // slots held as integers (e.g. set by hand) are read as doubles
  Rcpp::List converted(3 * nv);
  for (int s = 0; s < 3; ++s) {
    for (size_t k = 0; k < slot_in[s].size(); ++k) {
      SEXP sv = slot_in[s][k];
      if (Rf_isNull(sv) || TYPEOF(sv) == REALSXP) continue;
      if (TYPEOF(sv) != INTSXP && TYPEOF(sv) != LGLSXP) continue;  // input_variables() says what is wrong
      converted[s * nv + static_cast<R_xlen_t>(k)] = Rf_coerceVector(sv, REALSXP);
      slot_in[s][k] = converted[s * nv + static_cast<R_xlen_t>(k)];
    }
  }
  std::vector<mh::OptimizerVariable> vars = input_variables(r, weights, grads, slot_in);
  set_round32(vars, round32);
  Rcpp::List w_out(nv);
  fresh_weights(weights, vars, w_out);

  const bool all_alone = TYPEOF(all) == VECSXP && !MAYBE_SHARED(all);
  bool rebuild_all = !all_alone;
  Rcpp::List new_containers(3);
  for (int s = 0; s < 3; ++s) {
    if (!r.use.used[s]) continue;
    const bool list_alone = all_alone && TYPEOF(container[s]) == VECSXP && !MAYBE_SHARED(container[s]);
    std::vector<std::string> fresh_names;
    std::vector<SEXP> fresh_values;
    Rcpp::List keep_fresh(nv);  // protects the fresh arrays until they are in a list
    for (R_xlen_t k = 0; k < nv; ++k) {
      SEXP sv = slot_in[s][static_cast<size_t>(k)];
      const bool in_place = list_alone && !Rf_isNull(sv) && sv == named_element(container[s], CHAR(STRING_ELT(paths, k))) &&
                            !ALTREP(sv) && !MAYBE_SHARED(sv);
      if (in_place) {
        vars[static_cast<size_t>(k)].slot_out[s] = REAL(sv);
        ++slots_in_place;
        continue;
      }
      SEXP so = fresh_like(Rf_isNull(sv) ? SEXP(weights[k]) : sv, Rf_xlength(weights[k]));
      keep_fresh[k] = so;
      vars[static_cast<size_t>(k)].slot_out[s] = REAL(so);
      fresh_names.push_back(CHAR(STRING_ELT(paths, k)));
      fresh_values.push_back(so);
      ++slots_fresh;
    }
    if (!fresh_names.empty() || !list_alone) {
      new_containers[s] = list_with(container[s], fresh_names, fresh_values);
      rebuild_all = true;
    }
    // a list element is a reference: emptied, keep_fresh no longer counts
    // in the fresh arrays' reference counts (new_containers likewise below)
    for (R_xlen_t k = 0; k < nv; ++k) SET_VECTOR_ELT(keep_fresh, k, R_NilValue);
  }
  run_rule(r, vars, threads);
  if (rebuild_all) {
    std::vector<std::string> names;
    std::vector<SEXP> values;
    for (int s = 0; s < 3; ++s) {
      if (!r.use.used[s]) continue;
      names.push_back(CHAR(STRING_ELT(kinds, s)));
      values.push_back(Rf_isNull(new_containers[s]) ? container[s] : SEXP(new_containers[s]));
    }
    SEXP fresh_all = PROTECT(list_with(all, names, values));
    Rf_defineVar(slots_sym, fresh_all, opt);
    UNPROTECT(1);
  }
  for (int s = 0; s < 3; ++s) SET_VECTOR_ELT(new_containers, s, R_NilValue);
  return Rcpp::List::create(Rcpp::Named("weights") = w_out);
}

// Slot arrays cpp_optimizer_step() wrote in place and fresh since the
// package loaded, for tests.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_optimizer_step_stats() {
  return Rcpp::NumericVector::create(Rcpp::Named("in_place") = slots_in_place,
                                     Rcpp::Named("fresh") = slots_fresh);
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
  std::vector<SEXP> slot_in[3];
  list_slots(r, slots, weights.size(), slot_in);
  std::vector<mh::OptimizerVariable> vars = input_variables(r, weights, grads, slot_in);
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
