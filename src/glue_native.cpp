// Native tensors (glue_convert.h): float32 buffers that stay in C++ between
// the layers of a training step or a predict() batch, held by R external
// pointers; the R side is R/native-tensor.R. The buffers are mh::Buffer, so
// large ones come from the core's reuse cache (core/large_buffers.h) and
// go back to it when a tensor is released.
#include <Rcpp.h>

#include <algorithm>
#include <unordered_set>
#include <vector>

#include "core/add.h"
#include "core/parallel.h"
#include "core/permute.h"
#include "core/take_rows.h"
#include "glue_convert.h"

namespace mhglue {

namespace {

// Every tensor not yet finalized (the glue's one piece of state besides the
// weight cache): cpp_native_release_all() frees their buffers when a run is
// over, so a run's memory does not wait for R's garbage collector (which
// does not see it). Touched from R's thread only.
std::unordered_set<NativeTensor*>& live_tensors() {
  static std::unordered_set<NativeTensor*> live;
  return live;
}

SEXP native_class() {
  static SEXP cls = R_NilValue;
  if (cls == R_NilValue) {
    cls = Rf_mkString("multihead_native_tensor");
    R_PreserveObject(cls);
  }
  return cls;
}

void finalize_native(SEXP x) {
  NativeTensor* t = static_cast<NativeTensor*>(R_ExternalPtrAddr(x));
  if (!t) return;
  R_ClearExternalPtr(x);
  live_tensors().erase(t);
  delete t;
}

}  // namespace

NativeTensor* native_tensor(SEXP x) {
  if (TYPEOF(x) != EXTPTRSXP || !Rf_inherits(x, "multihead_native_tensor")) return nullptr;
  NativeTensor* t = static_cast<NativeTensor*>(R_ExternalPtrAddr(x));
  if (!t || t->released) Rcpp::stop("multihead: internal: a native tensor was used after its step ended");
  return t;
}

SEXP wrap_native(std::vector<idx> dims, mh::Buffer<float>&& data) {
  Rcpp::IntegerVector shape(dims.size());
  for (size_t k = 0; k < dims.size(); ++k) shape[k] = static_cast<int>(dims[k]);
  NativeTensor* t = new NativeTensor{std::move(dims), std::move(data), false};
  SEXP x = PROTECT(R_MakeExternalPtr(t, R_NilValue, R_NilValue));
  live_tensors().insert(t);
  R_RegisterCFinalizerEx(x, finalize_native, TRUE);
  Rf_setAttrib(x, Rf_install("shape"), shape);
  Rf_setAttrib(x, R_ClassSymbol, native_class());
  UNPROTECT(1);
  return x;
}

void release_native(NativeTensor* t) {
  mh::Buffer<float>().swap(t->data);
  t->released = true;
  live_tensors().erase(t);
}

int release_all_natives() {
  std::unordered_set<NativeTensor*>& live = live_tensors();
  const int n = static_cast<int>(live.size());
  for (NativeTensor* t : live) {
    mh::Buffer<float>().swap(t->data);
    t->released = true;
  }
  live.clear();
  return n;
}

}  // namespace mhglue

using mhglue::idx;

// A float32 native tensor with the values (rounded to float32) and dims of
// the R array x.
// [[Rcpp::export]]
SEXP cpp_native_from_array(SEXP x, int threads) {
  if (TYPEOF(x) != REALSXP && TYPEOF(x) != INTSXP && TYPEOF(x) != LGLSXP) {
    Rcpp::stop("cpp_native_from_array: expected a numeric array");
  }
  std::vector<idx> d = mhglue::r_dims(x);
  Rcpp::IntegerVector natural(d.size());
  for (int k = 0; k < natural.size(); ++k) natural[k] = k;
  return mhglue::out_of_memory_as_error([&]() {
    mh::Buffer<float> data = mhglue::to_core<float>(x, natural, threads);
    return mhglue::wrap_native(std::move(d), std::move(data));
  });
}

// The samples `rows` (1-based) of the double array x (at least 2 axes)
// along its first axis, as a native float32 tensor of dims
// (length(rows), dim(x)[-1]): a batch taken straight into C++ (no R array
// is made for it). Gathered column-major first (x's samples are its fastest
// axis), then laid out row-major.
// [[Rcpp::export]]
SEXP cpp_native_take_rows(SEXP x, Rcpp::IntegerVector rows, int threads) {
  if (TYPEOF(x) != REALSXP || Rf_length(Rf_getAttrib(x, R_DimSymbol)) < 2) {
    Rcpp::stop("cpp_native_take_rows: expected a double array of two or more axes");
  }
  std::vector<idx> d = mhglue::r_dims(x);
  const idx n = d[0], cols = n > 0 ? static_cast<idx>(Rf_xlength(x)) / n : 0, k = rows.size();
  std::vector<int32_t> at(static_cast<size_t>(k));
  for (idx j = 0; j < k; ++j) {
    if (rows[j] == NA_INTEGER || rows[j] < 1 || rows[j] > n) Rcpp::stop("cpp_native_take_rows: row out of range");
    at[static_cast<size_t>(j)] = rows[j] - 1;
  }
  d[0] = k;
  const int r = static_cast<int>(d.size());
  std::vector<int> reversed(r);
  for (int a = 0; a < r; ++a) reversed[a] = r - 1 - a;
  return mhglue::out_of_memory_as_error([&]() {
    mh::Buffer<double> batch(static_cast<size_t>(k * cols));
    mh::take_rows_colmajor(REAL_RO(x), n, cols, at.data(), k, batch.data(), threads);
    mh::Buffer<float> data(batch.size());
    mh::permute_copy(batch.data(), d, reversed, data.data(), threads);
    return mhglue::wrap_native(std::move(d), std::move(data));
  });
}

// The R array (doubles, the tensor's dims) of a native tensor.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_native_to_array(SEXP x, int threads) {
  const mhglue::NativeTensor* t = mhglue::native_tensor(x);
  if (!t) Rcpp::stop("cpp_native_to_array: expected a native tensor");
  Rcpp::IntegerVector dims(t->dims.size()), natural(t->dims.size());
  for (int k = 0; k < dims.size(); ++k) {
    dims[k] = static_cast<int>(t->dims[k]);
    natural[k] = k;
  }
  return mhglue::from_core(t->data.data(), dims, natural, threads);
}

// a + b (each a native tensor or an R array, one shape) as a native tensor:
// the sum of two gradients of one tensor.
// [[Rcpp::export]]
SEXP cpp_native_add(SEXP a, SEXP b, int threads) {
  const std::vector<idx> da = mhglue::r_dims(a), db = mhglue::r_dims(b);
  if (da != db) Rcpp::stop("cpp_native_add: the tensors' shapes differ");
  Rcpp::IntegerVector natural(da.size());
  for (int k = 0; k < natural.size(); ++k) natural[k] = k;
  return mhglue::out_of_memory_as_error([&]() {
    const mhglue::CoreInput<float> x = mhglue::core_input<float>(a, natural, threads),
                                   y = mhglue::core_input<float>(b, natural, threads);
    mh::Buffer<float> sum(x.size());
    mh::add_forward(std::vector<const float*>{x.data(), y.data()}, static_cast<idx>(sum.size()), sum.data(),
                    threads);
    return mhglue::wrap_native(std::vector<idx>(da), std::move(sum));
  });
}

namespace {

// Calls f(t) for every live native tensor in x: x itself, or inside lists
// (recursively; environments and other objects are not entered).
template <class F>
void for_each_native(SEXP x, F&& f, int depth = 0) {
  if (depth > 64) Rcpp::stop("multihead: internal: lists nested too deeply");
  if (TYPEOF(x) == EXTPTRSXP) {
    if (!Rf_inherits(x, "multihead_native_tensor")) return;
    mhglue::NativeTensor* t = static_cast<mhglue::NativeTensor*>(R_ExternalPtrAddr(x));
    if (t && !t->released) f(t);
  } else if (TYPEOF(x) == VECSXP) {
    const R_xlen_t n = Rf_xlength(x);
    for (R_xlen_t i = 0; i < n; ++i) for_each_native(VECTOR_ELT(x, i), f, depth + 1);
  }
}

}  // namespace

// Frees the buffers of the native tensors found in `release` (a list, see
// for_each_native) that are not also found in `keep`: the runner's release
// of a node's tensors once its backward pass has run (its cache, its
// outputs' values and gradients), keeping what the nodes still to run hold
// (the same tensor can be both: a pass-through layer's output is its input).
// A released tensor is an error to use. Returns how many were freed.
// [[Rcpp::export]]
int cpp_native_release_unshared(SEXP release, SEXP keep) {
  std::unordered_set<mhglue::NativeTensor*> kept, freed;
  for_each_native(keep, [&](mhglue::NativeTensor* t) { kept.insert(t); });
  for_each_native(release, [&](mhglue::NativeTensor* t) {
    if (kept.count(t) || freed.count(t)) return;
    freed.insert(t);
  });
  for (mhglue::NativeTensor* t : freed) mhglue::release_native(t);
  return static_cast<int>(freed.size());
}

// Frees the buffers of every native tensor (a run is over: nothing holds
// one any longer; a later use is an error). Returns how many were live.
// [[Rcpp::export]]
int cpp_native_release_all() {
  return mhglue::release_all_natives();
}
