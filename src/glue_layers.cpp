// Rcpp glue for the supporting layers (Dense, EinsumDense, Activation,
// LayerNormalization, RMSNormalization, UnitNormalization, Embedding,
// Dropout, GlobalAveragePooling1D, AveragePooling1D, MaxPooling1D, Conv1D,
// Add, Flatten): convert R arrays to the core's row-major layout (one copy each,
// in the axis order the R side plans), call the core, convert back. All
// validation of user input happens in R before these are called.
#include <Rcpp.h>

#include <cstdint>
#include <vector>

#include "core/activations.h"
#include "core/add.h"
#include "core/merge_elementwise.h"
#include "core/conv1d.h"
#include "core/dropout.h"
#include "core/dropout_rng.h"
#include "core/embedding.h"
#include "core/layer_norm.h"
#include "core/normalization.h"
#include "core/pooling.h"
#include "core/projection.h"
#include "glue_convert.h"
#include "glue_weight_cache.h"

using mh::idx;
using mhglue::from_core;
using mhglue::r_dims;
using mhglue::to_core;

namespace {

// f(0.0) for float64, f(0.0f) for float32: runs a typed body in the layer's
// dtype.
template <class F>
auto with_dtype(bool float64, F f) {
  return mhglue::out_of_memory_as_error([&]() { return float64 ? f(0.0) : f(0.0f); });
}

Rcpp::IntegerVector natural_order(int rank) {
  Rcpp::IntegerVector order(rank);
  for (int k = 0; k < rank; ++k) order[k] = k;
  return order;
}

Rcpp::IntegerVector int_dims(const std::vector<idx>& d) {
  Rcpp::IntegerVector out(d.size());
  for (size_t k = 0; k < d.size(); ++k) out[k] = static_cast<int>(d[k]);
  return out;
}

// Product of dims[order[k]] for k in [from, to).
idx prod_in_order(const std::vector<idx>& dims, const Rcpp::IntegerVector& order, int from,
                  int to) {
  idx p = 1;
  for (int k = from; k < to; ++k) p *= dims[order[k]];
  return p;
}

// Flat typed copy of an R numeric/integer/logical vector (no reordering).
template <class T>
mh::Buffer<T> flat_to(SEXP x) {
  const R_xlen_t n = Rf_xlength(x);
  mh::Buffer<T> out(static_cast<size_t>(n));
  if (TYPEOF(x) == REALSXP) {
    const double* p = REAL_RO(x);
    for (R_xlen_t i = 0; i < n; ++i) out[i] = static_cast<T>(p[i]);
  } else {
    const int* p = INTEGER_RO(x);
    for (R_xlen_t i = 0; i < n; ++i) out[i] = static_cast<T>(p[i]);
  }
  return out;
}

// Double vector from a typed buffer, with the dim attribute of `like` (if any).
template <class T>
Rcpp::NumericVector flat_from(const mh::Buffer<T>& buf, SEXP like) {
  Rcpp::NumericVector out = mhglue::fresh_numeric(static_cast<R_xlen_t>(buf.size()));
  for (size_t i = 0; i < buf.size(); ++i) out[i] = static_cast<double>(buf[i]);
  SEXP d = Rf_getAttrib(like, R_DimSymbol);
  if (!Rf_isNull(d)) out.attr("dim") = d;
  return out;
}

// Whether x is a native tensor (glue_convert.h): the layer then returns
// native tensors too (float32 layers only).
bool is_native(SEXP x) { return mhglue::native_tensor(x) != nullptr; }

// A flat saved buffer (what a backward pass reads as it is): a native tensor
// of dims (n) when `native`, else a double vector.
template <class T>
Rcpp::RObject saved_output(mh::Buffer<T>&& buf, bool native) {
  if (buf.empty()) return Rcpp::RObject(R_NilValue);
  Rcpp::IntegerVector n = Rcpp::IntegerVector::create(static_cast<int>(buf.size())), zero(1);
  if (native) return mhglue::core_output(std::move(buf), n, zero, true, 1);
  return flat_from(buf, R_NilValue);
}

// A flat saved buffer back (a native tensor read where it is).
template <class T>
mhglue::CoreInput<T> saved_input(SEXP saved) {
  mhglue::CoreInput<T> in;
  if (Rf_isNull(saved)) return in;
  if (is_native(saved)) {
    Rcpp::IntegerVector zero(1);
    return mhglue::core_input<T>(saved, zero, 1);
  }
  in.owned = flat_to<T>(saved);
  in.ptr = in.owned.data();
  in.count = in.owned.size();
  return in;
}

// The row-major dims of an R (column-major) array: its dims reversed.
std::vector<idx> reversed(const std::vector<idx>& d) { return std::vector<idx>(d.rbegin(), d.rend()); }

}  // namespace

// ---- projections (Dense, EinsumDense) ----------------------------------------

namespace {

// The GEMM sizes of a projection: x taken in x_order is (rows, in) with the
// last n_contract axes contracted; kernel in k_order is (in, out).
struct ProjectionShape {
  std::vector<idx> xd, kd;
  idx rows, in, out;
  ProjectionShape(SEXP x, const Rcpp::IntegerVector& x_order, int n_contract, SEXP kernel,
                  const Rcpp::IntegerVector& k_order, int n_kernel_in)
      : xd(r_dims(x)), kd(r_dims(kernel)) {
    const int xr = static_cast<int>(xd.size()), kr = static_cast<int>(kd.size());
    rows = prod_in_order(xd, x_order, 0, xr - n_contract);
    in = prod_in_order(xd, x_order, xr - n_contract, xr);
    out = prod_in_order(kd, k_order, n_kernel_in, kr);
    if (prod_in_order(kd, k_order, 0, n_kernel_in) != in) {
      Rcpp::stop("internal: kernel does not fit the input");
    }
  }
};

}  // namespace

// Forward of a projection. x is taken in axis order x_order (free axes, then
// the n_contract contracted axes); kernel in k_order (n_kernel_in contracted
// axes, then output axes); the result (free..., kernel output...) is returned
// as an R array of dims out_dims whose axes are out_order in core order.
// bias: NULL or the periodic bias vector (see core/projection.h).
// Returns list(output, saved): saved (core layout) is what backward needs.
// [[Rcpp::export]]
Rcpp::List cpp_projection_forward(SEXP x, Rcpp::IntegerVector x_order, int n_contract,
                                  SEXP kernel, Rcpp::IntegerVector k_order, int n_kernel_in,
                                  SEXP bias, Rcpp::IntegerVector out_dims,
                                  Rcpp::IntegerVector out_order, int activation, bool float64,
                                  int threads, SEXP owner = R_NilValue) {
  const mh::Activation act = mh::activation_from_code(activation);
  const ProjectionShape p(x, x_order, n_contract, kernel, k_order, n_kernel_in);
  const idx rows = p.rows, in = p.in, out = p.out;
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    const bool native = is_native(x);
    const mhglue::CoreInput<T> xc = mhglue::core_input<T>(x, x_order, threads);
    mh::Buffer<T> bc;
    const auto kc = mhglue::cached_to_core<T>(owner, "kernel", kernel, k_order);
    idx period = 0;
    if (!Rf_isNull(bias)) {
      bc = flat_to<T>(bias);
      period = static_cast<idx>(bc.size());
    }
    mh::Buffer<T> y(static_cast<size_t>(mhglue::checked_count({rows, out}, "the projection's output"))), saved;
    // An activation whose backward reads its output, on a native run with
    // the output in the core's layout: the output tensor itself is what the
    // backward reads (no copy of it is kept).
    const bool share_output = native && std::is_same<T, float>::value && act != mh::Activation::Linear &&
                              mh::activation_backward_uses_output(act) && mhglue::is_natural_order(out_order);
    if (act != mh::Activation::Linear && !share_output) saved.resize(y.size());
    mh::projection_forward(xc.data(), rows, in, kc->data(), out, bc.empty() ? nullptr : bc.data(),
                           period, act, y.data(), saved.empty() ? nullptr : saved.data(), threads);
    const Rcpp::RObject output = mhglue::core_output(std::move(y), out_dims, out_order, native, threads);
    return Rcpp::List::create(Rcpp::Named("output") = output,
                              Rcpp::Named("saved") = share_output ? output : saved_output(std::move(saved), native));
  });
}

// Backward of a projection (arguments as in cpp_projection_forward; period 0
// means no bias). Returns list(inputs, kernel, bias): dL/dx with x's dims,
// dL/dkernel with the kernel's dims, and the periodic bias gradient (or NULL).
// [[Rcpp::export]]
Rcpp::List cpp_projection_backward(SEXP x, Rcpp::IntegerVector x_order, int n_contract,
                                   SEXP kernel, Rcpp::IntegerVector k_order, int n_kernel_in,
                                   int period, SEXP saved, SEXP grad_output,
                                   Rcpp::IntegerVector out_order, int activation, bool float64,
                                   int threads, SEXP owner = R_NilValue, bool need_input = true) {
  const mh::Activation act = mh::activation_from_code(activation);
  const ProjectionShape p(x, x_order, n_contract, kernel, k_order, n_kernel_in);
  const idx rows = p.rows, in = p.in, out = p.out;
  const std::vector<idx>& xd = p.xd;
  const std::vector<idx>& kd = p.kd;
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    const bool native = is_native(x);
    const mhglue::CoreInput<T> xc = mhglue::core_input<T>(x, x_order, threads);
    const auto kc = mhglue::cached_to_core<T>(owner, "kernel", kernel, k_order);
    const mhglue::CoreInput<T> dy = mhglue::core_input<T>(grad_output, out_order, threads),
                               sv = saved_input<T>(saved);
    if (static_cast<idx>(dy.size()) != rows * out) Rcpp::stop("internal: grad_output size");
    mh::Buffer<T> dx(need_input ? xc.size() : 0), dw(kc->size()), db(static_cast<size_t>(period));
    mh::projection_backward(xc.data(), rows, in, kc->data(), out, period, act,
                            sv.empty() ? nullptr : sv.data(), dy.data(), need_input ? dx.data() : nullptr,
                            dw.data(), period > 0 ? db.data() : nullptr, threads);
    return Rcpp::List::create(
        Rcpp::Named("inputs") = need_input ? mhglue::core_output(std::move(dx), int_dims(xd), x_order, native, threads)
                                           : Rcpp::RObject(R_NilValue),
        Rcpp::Named("kernel") = from_core(dw.data(), int_dims(kd), k_order, threads),
        Rcpp::Named("bias") = period > 0 ? Rcpp::wrap(flat_from(db, R_NilValue)) : R_NilValue);
  });
}

// ---- Activation ---------------------------------------------------------------

// Activation along the last axis of x. Returns list(output, saved).
// [[Rcpp::export]]
Rcpp::List cpp_activation_forward(SEXP x, int activation, bool float64, int threads) {
  const mh::Activation act = mh::activation_from_code(activation);
  const std::vector<idx> d = r_dims(x);
  const int r = static_cast<int>(d.size());
  const idx cols = d[r - 1], rows = cols > 0 ? mh::idx(Rf_xlength(x)) / cols : 0;
  const Rcpp::IntegerVector order = natural_order(r);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> z = to_core<T>(x, order, threads), y(z.size());
    mh::activation_forward(act, z.data(), rows, cols, y.data(), threads);
    const bool keep_y = mh::activation_backward_uses_output(act);
    return Rcpp::List::create(
        Rcpp::Named("output") = from_core(y.data(), int_dims(d), order, threads),
        Rcpp::Named("saved") = act == mh::Activation::Linear ? R_NilValue
                               : Rcpp::wrap(flat_from(keep_y ? y : z, R_NilValue)));
  });
}

// dL/dx of an activation from the saved values and dL/dy (x's dims).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_activation_backward(SEXP saved, SEXP grad_output, int activation,
                                            bool float64, int threads) {
  const mh::Activation act = mh::activation_from_code(activation);
  const std::vector<idx> d = r_dims(grad_output);
  const int r = static_cast<int>(d.size());
  const idx cols = d[r - 1], rows = cols > 0 ? mh::idx(Rf_xlength(grad_output)) / cols : 0;
  const Rcpp::IntegerVector order = natural_order(r);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> dy = to_core<T>(grad_output, order, threads), sv, dz(dy.size());
    if (!Rf_isNull(saved)) sv = flat_to<T>(saved);
    mh::activation_backward(act, sv.empty() ? nullptr : sv.data(), dy.data(), rows, cols,
                            dz.data(), threads);
    return from_core(dz.data(), int_dims(d), order, threads);
  });
}

// ---- LayerNormalization ---------------------------------------------------------

// x taken in axis order `order` whose last n_norm axes are the normalized
// ones (in increasing axis order, matching gamma/beta's dims, which are
// converted to row-major like x). gamma, beta: arrays or NULL.
// [[Rcpp::export]]
SEXP cpp_layer_norm_forward(SEXP x, Rcpp::IntegerVector order, int n_norm,
                                           SEXP gamma, SEXP beta, double epsilon, bool float64,
                                           int threads) {
  const std::vector<idx> d = r_dims(x);
  const int r = static_cast<int>(d.size());
  const idx rows = prod_in_order(d, order, 0, r - n_norm), n = prod_in_order(d, order, r - n_norm, r);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    const mhglue::CoreInput<T> xc = mhglue::core_input<T>(x, order, threads);
    mh::Buffer<T> y(xc.size()), g, b;
    if (!Rf_isNull(gamma)) g = mhglue::weight_to_core<T>(gamma);
    if (!Rf_isNull(beta)) b = mhglue::weight_to_core<T>(beta);
    mh::layer_norm_forward(xc.data(), rows, n, g.empty() ? nullptr : g.data(),
                           b.empty() ? nullptr : b.data(), epsilon, y.data(), threads);
    return mhglue::core_output(std::move(y), int_dims(d), order, is_native(x), threads);
  });
}

// Returns list(inputs, gamma, beta): dL/dx and the parameter gradients
// (NULL when the layer has no such parameter), shaped like `param_like`.
// [[Rcpp::export]]
Rcpp::List cpp_layer_norm_backward(SEXP x, Rcpp::IntegerVector order, int n_norm, SEXP gamma,
                                   bool has_beta, SEXP param_like, double epsilon,
                                   SEXP grad_output, bool float64, int threads) {
  const std::vector<idx> d = r_dims(x);
  const int r = static_cast<int>(d.size());
  const idx rows = prod_in_order(d, order, 0, r - n_norm), n = prod_in_order(d, order, r - n_norm, r);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    const mhglue::CoreInput<T> xc = mhglue::core_input<T>(x, order, threads),
                               dy = mhglue::core_input<T>(grad_output, order, threads);
    mh::Buffer<T> g;
    if (!Rf_isNull(gamma)) g = mhglue::weight_to_core<T>(gamma);
    mh::Buffer<T> dx(xc.size()), dg(g.empty() ? 0 : static_cast<size_t>(n)),
        dbeta(has_beta ? static_cast<size_t>(n) : 0);
    mh::layer_norm_backward(xc.data(), rows, n, g.empty() ? nullptr : g.data(), epsilon,
                            dy.data(), dx.data(), dg.empty() ? nullptr : dg.data(),
                            dbeta.empty() ? nullptr : dbeta.data(), threads);
    return Rcpp::List::create(
        Rcpp::Named("inputs") = mhglue::core_output(std::move(dx), int_dims(d), order, is_native(x), threads),
        Rcpp::Named("gamma") = dg.empty() ? R_NilValue : Rcpp::wrap(mhglue::weight_from_core(dg.data(), param_like)),
        Rcpp::Named("beta") = dbeta.empty() ? R_NilValue : Rcpp::wrap(mhglue::weight_from_core(dbeta.data(), param_like)));
  });
}

// ---- Embedding --------------------------------------------------------------------

// ids: numeric/integer array of whole numbers in [0, V) (checked in R);
// table (V, D). Output dims c(dim(ids), D).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_embedding_forward(SEXP ids, SEXP table, bool float64, int threads,
                                          SEXP owner = R_NilValue) {
  const std::vector<idx> id = r_dims(ids), td = r_dims(table);
  const Rcpp::IntegerVector id_order = natural_order(static_cast<int>(id.size()));
  mh::Buffer<int32_t> ic = to_core<int32_t>(ids, id_order);
  std::vector<idx> od = id;
  od.push_back(td[1]);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    const auto tc = mhglue::cached_to_core<T>(owner, "embeddings", table, natural_order(2));
    mh::Buffer<T> y(static_cast<size_t>(mhglue::checked_count({static_cast<idx>(ic.size()), td[1]}, "the embedding output")));
    mh::embedding_forward(ic.data(), static_cast<idx>(ic.size()), tc->data(), td[0], td[1], y.data(),
                          threads);
    return from_core(y.data(), int_dims(od), natural_order(static_cast<int>(od.size())), threads);
  });
}

// dL/dtable (V, D) from dL/doutput (dims c(dim(ids), D)).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_embedding_backward(SEXP ids, SEXP grad_output, SEXP table, bool float64,
                                           int threads) {
  const std::vector<idx> id = r_dims(ids), td = r_dims(table), gd = r_dims(grad_output);
  mh::Buffer<int32_t> ic = to_core<int32_t>(ids, natural_order(static_cast<int>(id.size())));
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> dy = to_core<T>(grad_output, natural_order(static_cast<int>(gd.size())), threads);
    mh::Buffer<T> dt(static_cast<size_t>(mhglue::checked_count({td[0], td[1]}, "dL/dembeddings")));
    mh::embedding_backward(ic.data(), static_cast<idx>(ic.size()), dy.data(), td[0], td[1],
                           dt.data(), threads);
    return mhglue::weight_from_core(dt.data(), table);
  });
}

// ---- Dropout ----------------------------------------------------------------------

// x * keep / (1 - rate) with the mask of (seed, counter) broadcast from
// noise_dims (Keras axis order, each 1 or the size of x's axis). Applied to
// dL/dy with the same seed and counter it is the backward pass.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_dropout(SEXP x, Rcpp::IntegerVector noise_dims, double rate, double seed,
                                double counter, bool float64, int threads) {
  const std::vector<idx> d = r_dims(x);
  std::vector<idx> nd(noise_dims.begin(), noise_dims.end());
  const uint64_t key =
      mh::dropout_key(static_cast<uint64_t>(seed), static_cast<uint64_t>(counter));
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = flat_to<T>(x), y(xc.size());
    mh::dropout_apply(xc.data(), reversed(d), reversed(nd), rate, key, y.data(), threads);
    return flat_from(y, x);
  });
}

// ---- GlobalAveragePooling1D -----------------------------------------------------------

// x of rank 3 taken in axis order `order` as (B, steps, C); mask (B, steps)
// logical or NULL. Returns (B, C).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_average_steps_forward(SEXP x, Rcpp::IntegerVector order, SEXP mask,
                                              bool float64, int threads) {
  const std::vector<idx> d = r_dims(x);
  const idx B = d[order[0]], S = d[order[1]], C = d[order[2]];
  mh::Buffer<int32_t> mc;
  if (!Rf_isNull(mask)) mc = to_core<int32_t>(mask, natural_order(2));
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    const mhglue::CoreInput<T> xc = mhglue::core_input<T>(x, order, threads);
    mh::Buffer<T> y(static_cast<size_t>(B * C));
    mh::average_steps_forward(xc.data(), B, S, C, mc.empty() ? nullptr : mc.data(), y.data(),
                              threads);
    return from_core(y.data(), int_dims({B, C}), natural_order(2), threads);
  });
}

// dL/dx (dims x_dims, axes in `order` as forward) from dL/dy (B, C).
// [[Rcpp::export]]
SEXP cpp_average_steps_backward(SEXP grad_output, Rcpp::IntegerVector x_dims,
                                Rcpp::IntegerVector order, SEXP mask, bool float64, int threads,
                                bool native = false) {
  const idx B = x_dims[order[0]], S = x_dims[order[1]], C = x_dims[order[2]];
  mh::Buffer<int32_t> mc;
  if (!Rf_isNull(mask)) mc = to_core<int32_t>(mask, natural_order(2));
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    const mhglue::CoreInput<T> dy = mhglue::core_input<T>(grad_output, natural_order(2), threads);
    mh::Buffer<T> dx(static_cast<size_t>(B * S * C));
    mh::average_steps_backward(dy.data(), B, S, C, mc.empty() ? nullptr : mc.data(), dx.data(),
                               threads);
    return mhglue::core_output(std::move(dx), x_dims, order, native, threads);
  });
}

// ---- Add --------------------------------------------------------------------------------

// Elementwise sum of a list of arrays or native tensors of one shape
// (checked in R); a native tensor when an input is one.
// [[Rcpp::export]]
SEXP cpp_add_forward(Rcpp::List inputs, bool float64, int threads) {
  return with_dtype(float64, [&](auto zero) -> SEXP {
    using T = decltype(zero);
    std::vector<mhglue::CoreInput<T>> bufs;
    std::vector<const T*> ptrs;
    bufs.reserve(inputs.size());
    bool native = false;
    for (R_xlen_t k = 0; k < inputs.size(); ++k) {
      SEXP xk = inputs[k];
      if (is_native(xk)) {
        native = true;
        bufs.push_back(mhglue::core_input<T>(xk, natural_order(static_cast<int>(r_dims(xk).size())), threads));
      } else {
        mhglue::CoreInput<T> in;
        in.owned = flat_to<T>(xk);
        in.ptr = in.owned.data();
        in.count = in.owned.size();
        bufs.push_back(std::move(in));
      }
      ptrs.push_back(bufs.back().data());
    }
    mh::Buffer<T> y(bufs[0].size());
    mh::add_forward(ptrs, static_cast<idx>(y.size()), y.data(), threads);
    if (native) {
      const std::vector<idx> d = r_dims(inputs[0]);
      return mhglue::core_output(std::move(y), int_dims(d), natural_order(static_cast<int>(d.size())), true,
                                 threads);
    }
    return flat_from(y, inputs[0]);
  });
}

namespace {

// float32 values of native tensors or R arrays of one shape (checked in R).
std::vector<mhglue::CoreInput<float>> float_inputs(const Rcpp::List& inputs, int threads) {
  std::vector<mhglue::CoreInput<float>> bufs;
  bufs.reserve(inputs.size());
  for (R_xlen_t k = 0; k < inputs.size(); ++k) {
    SEXP xk = inputs[k];
    bufs.push_back(mhglue::core_input<float>(xk, natural_order(static_cast<int>(r_dims(xk).size())), threads));
  }
  for (const auto& b : bufs) {
    if (b.size() != bufs[0].size()) Rcpp::stop("multihead: internal: merge inputs of different sizes");
  }
  return bufs;
}

SEXP native_like(mh::Buffer<float>&& y, SEXP like, int threads) {
  const std::vector<idx> d = r_dims(like);
  return mhglue::core_output(std::move(y), int_dims(d), natural_order(static_cast<int>(d.size())), true, threads);
}

}  // namespace

// Subtract (two inputs) or Multiply (`kind`) of native tensors or arrays of
// one shape (checked in R), float32 (core/merge_elementwise.h): a native
// tensor.
// [[Rcpp::export]]
SEXP cpp_merge_native_forward(std::string kind, Rcpp::List inputs, int threads) {
  return mhglue::out_of_memory_as_error([&]() -> SEXP {
    const std::vector<mhglue::CoreInput<float>> xs = float_inputs(inputs, threads);
    if (xs.empty()) Rcpp::stop("multihead: internal: no merge inputs");
    const idx n = static_cast<idx>(xs[0].size());
    mh::Buffer<float> y(xs[0].size());
    if (kind == "Subtract") {
      if (xs.size() != 2) Rcpp::stop("multihead: internal: Subtract takes two inputs");
      mh::subtract_forward(xs[0].data(), xs[1].data(), n, y.data(), threads);
    } else if (kind == "Multiply") {
      std::vector<const float*> ptrs;
      for (const auto& x : xs) ptrs.push_back(x.data());
      mh::multiply_forward(ptrs, n, y.data(), threads);
    } else {
      Rcpp::stop("multihead: internal: unknown merge \"%s\"", kind);
    }
    return native_like(std::move(y), inputs[0], threads);
  });
}

// The inputs' gradients (a list of native tensors) of Subtract (the second
// input's: -grad; the first input's is grad itself, not returned) or
// Multiply (one per input), from the forward's inputs and the output's
// gradient `grad`.
// [[Rcpp::export]]
Rcpp::List cpp_merge_native_backward(std::string kind, Rcpp::List inputs, SEXP grad, int threads) {
  return mhglue::out_of_memory_as_error([&]() -> Rcpp::List {
    const idx rank = static_cast<idx>(r_dims(grad).size());
    const mhglue::CoreInput<float> g = mhglue::core_input<float>(grad, natural_order(static_cast<int>(rank)), threads);
    const idx n = static_cast<idx>(g.size());
    if (kind == "Subtract") {
      mh::Buffer<float> d(g.size());
      mh::negate(g.data(), n, d.data(), threads);
      return Rcpp::List::create(native_like(std::move(d), grad, threads));
    }
    if (kind != "Multiply") Rcpp::stop("multihead: internal: unknown merge \"%s\"", kind);
    const std::vector<mhglue::CoreInput<float>> xs = float_inputs(inputs, threads);
    std::vector<const float*> ptrs;
    std::vector<mh::Buffer<float>> ds;
    std::vector<float*> dptrs;
    for (const auto& x : xs) {
      if (x.size() != g.size()) Rcpp::stop("multihead: internal: merge gradient of another size");
      ptrs.push_back(x.data());
      ds.emplace_back(g.size());
    }
    for (auto& d : ds) dptrs.push_back(d.data());
    mh::multiply_backward(ptrs, g.data(), n, dptrs, threads);
    Rcpp::List out(static_cast<R_xlen_t>(ds.size()));
    for (size_t j = 0; j < ds.size(); ++j) out[static_cast<R_xlen_t>(j)] = native_like(std::move(ds[j]), grad, threads);
    return out;
  });
}

// Values rounded to the dtype (the identity backward of Add, and of any
// layer that passes a gradient through unchanged).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_as_dtype(SEXP x, bool float64) {
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    return flat_from(flat_to<T>(x), x);
  });
}

// ---- Flatten -----------------------------------------------------------------------------

// Keras's row-major flattening: x taken in axis order `order` (batch first),
// returned as (B, prod(rest)).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_flatten(SEXP x, Rcpp::IntegerVector order, bool float64) {
  const std::vector<idx> d = r_dims(x);
  const idx B = d[0], rest = B > 0 ? static_cast<idx>(Rf_xlength(x)) / B : 0;
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = to_core<T>(x, order);
    return from_core(xc.data(), int_dims({B, rest}), natural_order(2));
  });
}

// Inverse of cpp_flatten: (B, P) back to an array of dims x_dims.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_unflatten(SEXP y, Rcpp::IntegerVector x_dims, Rcpp::IntegerVector order,
                                  bool float64) {
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> yc = to_core<T>(y, natural_order(2));
    return from_core(yc.data(), x_dims, order);
  });
}

// ---- Conv1D -------------------------------------------------------------------------------

namespace {

// The convolution of x (rank 3, taken in axis order `order` as (B, L, C))
// with kernel (K, C / groups, F).
mh::Conv1dShape conv1d_shape_of(SEXP x, const Rcpp::IntegerVector& order, SEXP kernel, int stride,
                                int dilation, int groups, int padding) {
  const std::vector<idx> d = r_dims(x), kd = r_dims(kernel);
  if (d.size() != 3 || kd.size() != 3 || order.size() != 3) Rcpp::stop("internal: conv1d ranks");
  if (padding < 0 || padding > 2) Rcpp::stop("internal: conv1d padding code");
  const idx C = d[order[2]];
  if (kd[1] * groups != C) Rcpp::stop("internal: the kernel does not fit the input channels");
  return mh::conv1d_shape(d[order[0]], d[order[1]], C, kd[2], kd[0], stride, dilation, groups,
                          static_cast<mh::Conv1dPadding>(padding));
}

// The R dims of a conv / pooling output: x's dims with the steps axis
// (order[1]) of length out_steps and the channel axis (order[2]) of length
// channels.
Rcpp::IntegerVector steps_output_dims(SEXP x, const Rcpp::IntegerVector& order, idx out_steps,
                                      idx channels) {
  Rcpp::IntegerVector out = int_dims(r_dims(x));
  out[order[1]] = static_cast<int>(out_steps);
  out[order[2]] = static_cast<int>(channels);
  return out;
}

}  // namespace

// x: rank-3 array taken in axis order `order` as (B, L, C) (0:2 for
// channels_last, c(0, 2, 1) for channels_first); kernel (K, C / groups, F);
// bias NULL or (F); padding 0 valid, 1 same, 2 causal (core/conv1d.h).
// Returns the output with x's axis order: (B, Lout, F) or (B, F, Lout).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_conv1d_forward(SEXP x, Rcpp::IntegerVector order, SEXP kernel, SEXP bias,
                                       int stride, int dilation, int groups, int padding,
                                       bool float64, int threads) {
  const mh::Conv1dShape s = conv1d_shape_of(x, order, kernel, stride, dilation, groups, padding);
  const Rcpp::IntegerVector out_dims = steps_output_dims(x, order, s.out_steps, s.filters);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = to_core<T>(x, order, threads), kc = mhglue::weight_to_core<T>(kernel), bc;
    if (!Rf_isNull(bias)) bc = flat_to<T>(bias);
    mh::Buffer<T> y(static_cast<size_t>(
        mhglue::checked_count({s.batch, s.out_steps, s.filters}, "the convolution's output")));
    mh::conv1d_forward(xc.data(), kc.data(), bc.empty() ? nullptr : bc.data(), s, y.data(), threads);
    return from_core(y.data(), out_dims, order, threads);
  });
}

// Gradients of cpp_conv1d_forward (same arguments; grad_output has the
// output's dims). Returns list(inputs, kernel, bias) (bias NULL without one).
// [[Rcpp::export]]
Rcpp::List cpp_conv1d_backward(SEXP x, Rcpp::IntegerVector order, SEXP kernel, bool has_bias,
                               int stride, int dilation, int groups, int padding, SEXP grad_output,
                               bool float64, int threads) {
  const mh::Conv1dShape s = conv1d_shape_of(x, order, kernel, stride, dilation, groups, padding);
  const std::vector<idx> d = r_dims(x);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = to_core<T>(x, order, threads), kc = mhglue::weight_to_core<T>(kernel),
                  dy = to_core<T>(grad_output, order, threads);
    if (static_cast<idx>(dy.size()) != s.batch * s.out_steps * s.filters) {
      Rcpp::stop("internal: grad_output size");
    }
    mh::Buffer<T> dx(xc.size()), dw(kc.size()), db(has_bias ? static_cast<size_t>(s.filters) : 0);
    mh::conv1d_backward(xc.data(), kc.data(), dy.data(), s, dx.data(), dw.data(),
                        has_bias ? db.data() : nullptr, threads);
    return Rcpp::List::create(
        Rcpp::Named("inputs") = from_core(dx.data(), int_dims(d), order, threads),
        Rcpp::Named("kernel") = mhglue::weight_from_core(dw.data(), kernel),
        Rcpp::Named("bias") = has_bias ? Rcpp::wrap(flat_from(db, R_NilValue)) : R_NilValue);
  });
}

// ---- AveragePooling1D, MaxPooling1D ------------------------------------------------------------

namespace {

mh::Pool1dShape pool1d_shape_of(SEXP x, const Rcpp::IntegerVector& order, int pool, int stride,
                                bool same) {
  const std::vector<idx> d = r_dims(x);
  if (d.size() != 3 || order.size() != 3) Rcpp::stop("internal: pool1d ranks");
  return mh::pool1d_shape(d[order[0]], d[order[1]], d[order[2]], pool, stride, same);
}

}  // namespace

// Windowed pooling of x (rank 3, taken in axis order `order` as (B, L, C));
// max = TRUE for MaxPooling1D. Returns the output in x's axis order.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_pool1d_forward(SEXP x, Rcpp::IntegerVector order, int pool, int stride,
                                       bool same, bool max, bool float64, int threads) {
  const mh::Pool1dShape s = pool1d_shape_of(x, order, pool, stride, same);
  const Rcpp::IntegerVector out_dims = steps_output_dims(x, order, s.out_steps, s.channels);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = to_core<T>(x, order, threads),
                  y(static_cast<size_t>(s.batch * s.out_steps * s.channels));
    if (max) mh::max_pool1d_forward(xc.data(), s, y.data(), threads);
    else mh::average_pool1d_forward(xc.data(), s, y.data(), threads);
    return from_core(y.data(), out_dims, order, threads);
  });
}

// dL/dx (x's dims) of cpp_pool1d_forward from grad_output (the output's dims).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_pool1d_backward(SEXP x, SEXP grad_output, Rcpp::IntegerVector order,
                                        int pool, int stride, bool same, bool max, bool float64,
                                        int threads) {
  const mh::Pool1dShape s = pool1d_shape_of(x, order, pool, stride, same);
  const std::vector<idx> d = r_dims(x);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> dy = to_core<T>(grad_output, order, threads), dx(static_cast<size_t>(s.batch * s.steps * s.channels));
    if (static_cast<idx>(dy.size()) != s.batch * s.out_steps * s.channels) {
      Rcpp::stop("internal: grad_output size");
    }
    if (max) {
      mh::Buffer<T> xc = to_core<T>(x, order, threads);
      mh::max_pool1d_backward(xc.data(), dy.data(), s, dx.data(), threads);
    } else {
      mh::average_pool1d_backward(dy.data(), s, dx.data(), threads);
    }
    return from_core(dx.data(), int_dims(d), order, threads);
  });
}

// ---- RMSNormalization, UnitNormalization ----------------------------------------------------------

// x taken in axis order `order` whose last n_norm axes are the normalized
// ones (increasing axis order, matching scale's dims); scale NULL or an
// array. Returns y with x's dims.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_rms_norm_forward(SEXP x, Rcpp::IntegerVector order, int n_norm, SEXP scale,
                                         double epsilon, bool float64, int threads) {
  const std::vector<idx> d = r_dims(x);
  const int r = static_cast<int>(d.size());
  const idx rows = prod_in_order(d, order, 0, r - n_norm), n = prod_in_order(d, order, r - n_norm, r);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = to_core<T>(x, order, threads), y(xc.size()), sc;
    if (!Rf_isNull(scale)) sc = mhglue::weight_to_core<T>(scale);
    if (!sc.empty() && static_cast<idx>(sc.size()) != n) Rcpp::stop("internal: scale size");
    mh::rms_norm_forward(xc.data(), rows, n, sc.empty() ? nullptr : sc.data(), epsilon, y.data(),
                         threads);
    return from_core(y.data(), int_dims(d), order, threads);
  });
}

// Returns list(inputs, scale): dL/dx and dL/dscale (scale's dims; NULL
// without a scale).
// [[Rcpp::export]]
Rcpp::List cpp_rms_norm_backward(SEXP x, Rcpp::IntegerVector order, int n_norm, SEXP scale,
                                 double epsilon, SEXP grad_output, bool float64, int threads) {
  const std::vector<idx> d = r_dims(x);
  const int r = static_cast<int>(d.size());
  const idx rows = prod_in_order(d, order, 0, r - n_norm), n = prod_in_order(d, order, r - n_norm, r);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = to_core<T>(x, order, threads), dy = to_core<T>(grad_output, order, threads), sc;
    if (!Rf_isNull(scale)) sc = mhglue::weight_to_core<T>(scale);
    if (!sc.empty() && static_cast<idx>(sc.size()) != n) Rcpp::stop("internal: scale size");
    mh::Buffer<T> dx(xc.size()), ds(sc.size());
    mh::rms_norm_backward(xc.data(), rows, n, sc.empty() ? nullptr : sc.data(), epsilon, dy.data(),
                          dx.data(), sc.empty() ? nullptr : ds.data(), threads);
    return Rcpp::List::create(
        Rcpp::Named("inputs") = from_core(dx.data(), int_dims(d), order, threads),
        Rcpp::Named("scale") = sc.empty() ? R_NilValue : Rcpp::wrap(mhglue::weight_from_core(ds.data(), scale)));
  });
}

// Unit normalization of x (axes as cpp_rms_norm_forward).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_unit_norm_forward(SEXP x, Rcpp::IntegerVector order, int n_norm,
                                          double epsilon, bool float64, int threads) {
  const std::vector<idx> d = r_dims(x);
  const int r = static_cast<int>(d.size());
  const idx rows = prod_in_order(d, order, 0, r - n_norm), n = prod_in_order(d, order, r - n_norm, r);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = to_core<T>(x, order, threads), y(xc.size());
    mh::unit_norm_forward(xc.data(), rows, n, epsilon, y.data(), threads);
    return from_core(y.data(), int_dims(d), order, threads);
  });
}

// dL/dx of cpp_unit_norm_forward (x's dims).
// [[Rcpp::export]]
Rcpp::NumericVector cpp_unit_norm_backward(SEXP x, Rcpp::IntegerVector order, int n_norm,
                                           double epsilon, SEXP grad_output, bool float64,
                                           int threads) {
  const std::vector<idx> d = r_dims(x);
  const int r = static_cast<int>(d.size());
  const idx rows = prod_in_order(d, order, 0, r - n_norm), n = prod_in_order(d, order, r - n_norm, r);
  return with_dtype(float64, [&](auto zero) {
    using T = decltype(zero);
    mh::Buffer<T> xc = to_core<T>(x, order, threads), dy = to_core<T>(grad_output, order, threads), dx(xc.size());
    mh::unit_norm_backward(xc.data(), rows, n, epsilon, dy.data(), dx.data(), threads);
    return from_core(dx.data(), int_dims(d), order, threads);
  });
}
