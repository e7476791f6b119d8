// R <-> core conversions for the Rcpp glue. The core's tensors are row-major
// in a chosen axis order (see core/layout.h); R arrays are column-major.
#pragma once

#include <Rcpp.h>

#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/large_buffers.h"
#include "core/layout.h"
#include "core/permute.h"

// Rcpp turns an exception into an R condition whose first class is the
// exception's C++ class name: this one's is "multihead_error", the class of
// every multihead error in R (R/errors.R).
struct multihead_error : std::length_error {
  using std::length_error::length_error;
};

// glue_util.cpp: TRUE when every element of x is finite (no NA, NaN, Inf).
bool cpp_all_finite(SEXP x, int threads);

namespace mhglue {

using mh::idx;

// The element count of an array of shape `dims`, checked BEFORE allocating:
// a negative size, an overflowing product or more than 2^52 elements (R's
// longest vector) throws multihead_error naming `what`.
template <class Dims>
idx checked_count(const Dims& dims, const char* what) {
  idx n = 0;
  if (!mh::count_fits(dims.begin(), dims.end(), &n)) {
    std::string shape;
    for (idx d : dims) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    throw multihead_error(std::string("multihead: ") + what + " of shape (" + shape +
                          ") would have a negative size or more than 2^52 elements.");
  }
  return n;
}

inline idx checked_count(std::initializer_list<idx> dims, const char* what) {
  return checked_count<std::initializer_list<idx>>(dims, what);
}

// Runs f(); a failed allocation becomes a multihead_error that says so
// (Rcpp would report a bare "std::bad_alloc").
template <class F>
auto out_of_memory_as_error(F f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    throw multihead_error(
        "multihead: not enough memory for this call; use fewer samples per call, shorter sequences "
        "or float32.");
  }
}

// ---- native tensors ------------------------------------------------------------
// A float32 tensor kept in C++ between the layers of a training step or a
// predict() batch (R/native-tensor.R): row-major over its Keras dims (batch
// first). R holds it by an external pointer of class
// "multihead_native_tensor" (attribute "shape": the dims); the finalizer
// frees it, release_all_natives() frees the buffers of all at the end of a
// run (glue_native.cpp).
struct NativeTensor {
  std::vector<idx> dims;
  mh::Buffer<float> data;
  bool released = false;
};

// The tensor behind x, or nullptr when x is not a native tensor; an error for
// a released one.
NativeTensor* native_tensor(SEXP x);

// A new R handle owning `data` (row-major over `dims`).
SEXP wrap_native(std::vector<idx> dims, mh::Buffer<float>&& data);

// Frees one live tensor's buffer (later uses are errors).
void release_native(NativeTensor* t);

// Frees every live native tensor's buffer (glue_native.cpp); the count.
int release_all_natives();

// Keras dims of an R array (its dim attribute, or its length) or of a native
// tensor.
inline std::vector<idx> r_dims(SEXP x) {
  if (TYPEOF(x) == EXTPTRSXP) {
    if (NativeTensor* t = native_tensor(x)) return t->dims;
  }
  SEXP d = Rf_getAttrib(x, R_DimSymbol);
  std::vector<idx> out;
  if (Rf_isNull(d)) {
    out.push_back(Rf_xlength(x));
  } else {
    for (R_xlen_t i = 0; i < Rf_xlength(d); ++i) out.push_back(INTEGER(d)[i]);
  }
  return out;
}

// Row-major copy of the R array `x` with its (0-based) axes taken in the
// order `order` (order[0] varies slowest), converted to T, on up to
// `threads` threads.
template <class T>
mh::Buffer<T> to_core(SEXP x, const Rcpp::IntegerVector& order, int threads = 1) {
  const std::vector<idx> dims = r_dims(x);
  const int r = static_cast<int>(dims.size());
  if (order.size() != r) Rcpp::stop("internal: axis order does not match the array rank");
  // Row-major in `order` == column-major with the axes reversed.
  std::vector<int> perm(r);
  for (int k = 0; k < r; ++k) perm[k] = order[r - 1 - k];
  const idx n = checked_count(dims, "an input array");
  mh::Buffer<T> out(static_cast<size_t>(n));
  if (TYPEOF(x) == EXTPTRSXP) {
    // Row-major over the Keras dims == column-major with the dims reversed
    // (source axis k is Keras axis r-1-k); the destination's column-major
    // axis k is Keras axis order[r-1-k].
    const NativeTensor* t = native_tensor(x);
    if (!t) Rcpp::stop("internal: expected a numeric array or a native tensor");
    std::vector<idx> sdim(dims.rbegin(), dims.rend());
    std::vector<int> from(r);
    for (int k = 0; k < r; ++k) from[k] = r - 1 - order[r - 1 - k];
    mh::permute_copy(t->data.data(), sdim, from, out.data(), threads);
  } else if (TYPEOF(x) == REALSXP) {
    mh::permute_copy(REAL_RO(x), dims, perm, out.data(), threads);
  } else if (TYPEOF(x) == INTSXP || TYPEOF(x) == LGLSXP) {
    mh::permute_copy(INTEGER_RO(x), dims, perm, out.data(), threads);
  } else {
    Rcpp::stop("internal: expected a numeric array");
  }
  return out;
}

// Inverse of to_core: `buf` is row-major over the axes of an array with
// Keras dims `dims` taken in the order `order`; returns the R array.
// A new double vector of n elements, uninitialised, for the core to fill:
// its untouched pages are offered huge pages (mh::advise_huge_pages), so the
// first writes fault 2 MiB at a time (4 KiB faults on a fresh 8 MB array cost
// about as much as a third of a 32 x 128 x 256 attention forward call).
inline Rcpp::NumericVector fresh_numeric(R_xlen_t n) {
  Rcpp::NumericVector out(Rcpp::no_init(n));
  if (n > 0) mh::advise_huge_pages(REAL(out), static_cast<std::size_t>(n) * sizeof(double));
  return out;
}

template <class T>
Rcpp::NumericVector from_core(const T* buf, const Rcpp::IntegerVector& dims,
                              const Rcpp::IntegerVector& order, int threads = 1) {
  const int r = dims.size();
  // buf is column-major with dims sdim[k] = dims[order[r-1-k]].
  std::vector<idx> sdim(r);
  std::vector<int> where(r);  // where[j] = src axis holding Keras axis j
  for (int k = 0; k < r; ++k) {
    sdim[k] = dims[order[r - 1 - k]];
    where[order[r - 1 - k]] = k;
  }
  const idx n = checked_count(sdim, "a result array");
  Rcpp::NumericVector out = fresh_numeric(static_cast<R_xlen_t>(n));
  if (n > 0) mh::permute_copy(buf, sdim, where, REAL(out), threads);
  out.attr("dim") = dims;
  return out;
}

// An input of a glue call in the core's layout (row-major in `order`): a
// native float32 tensor in its natural order is read where it is (no copy);
// anything else is converted by to_core().
template <class T>
struct CoreInput {
  const T* ptr = nullptr;
  size_t count = 0;
  mh::Buffer<T> owned;
  const T* data() const { return ptr; }
  size_t size() const { return count; }
  bool empty() const { return count == 0; }
};

inline bool is_natural_order(const Rcpp::IntegerVector& order) {
  for (int k = 0; k < order.size(); ++k)
    if (order[k] != k) return false;
  return true;
}

template <class T>
CoreInput<T> core_input(SEXP x, const Rcpp::IntegerVector& order, int threads) {
  CoreInput<T> in;
  if constexpr (std::is_same<T, float>::value) {
    if (TYPEOF(x) == EXTPTRSXP && is_natural_order(order)) {
      if (const NativeTensor* t = native_tensor(x)) {
        in.ptr = t->data.data();
        in.count = t->data.size();
        return in;
      }
    }
  }
  in.owned = to_core<T>(x, order, threads);
  in.ptr = in.owned.data();
  in.count = in.owned.size();
  return in;
}

// A glue call's result `buf` (row-major over the Keras dims `dims` taken in
// `order`): a native tensor when `native` (float32 results only; moved, or
// permuted to the natural order), else the R array (from_core()).
// (An Rcpp::RObject, so the result stays protected while the caller makes
// further R objects, e.g. the other elements of an Rcpp::List::create().)
template <class T>
Rcpp::RObject core_output(mh::Buffer<T>&& buf, const Rcpp::IntegerVector& dims,
                          const Rcpp::IntegerVector& order, bool native, int threads) {
  if constexpr (!std::is_same<T, float>::value) {
    return from_core(buf.data(), dims, order, threads);
  } else {
  if (!native) return from_core(buf.data(), dims, order, threads);
  const int r = dims.size();
  std::vector<idx> d(dims.begin(), dims.end());
  mh::Buffer<float> data;
  if (is_natural_order(order)) {
    data.swap(buf);
  } else {
    // buf is column-major with dims sdim[k] = dims[order[r-1-k]]; the
    // natural layout is column-major with the dims reversed.
    std::vector<idx> sdim(r);
    std::vector<int> where(r);
    for (int k = 0; k < r; ++k) {
      sdim[k] = dims[order[r - 1 - k]];
      where[order[r - 1 - k]] = k;
    }
    std::vector<int> perm(r);
    for (int k = 0; k < r; ++k) perm[k] = where[r - 1 - k];
    data.resize(buf.size());
    mh::permute_copy(buf.data(), sdim, perm, data.data(), threads);
  }
  return Rcpp::RObject(wrap_native(std::move(d), std::move(data)));
  }
}

// An R array with dims `dims` seen as a column-major matrix: its first
// `n_row_axes` axes (column-major) index the rows, the others the columns.
// The core orders the same axes row-major in the order `order` (row axes
// first). Returns, for each row of the R matrix, its row in the core's order
// (only the first n_row_axes entries of `order` are read; they must be a
// permutation of 0 .. n_row_axes - 1).
inline std::vector<idx> core_row_of(const std::vector<idx>& dims, int n_row_axes,
                                    const Rcpp::IntegerVector& order) {
  std::vector<idx> stride(n_row_axes, 0);  // core stride of each R axis
  idx rows = 1;
  for (int k = n_row_axes - 1; k >= 0; --k) {
    stride[order[k]] = rows;
    rows *= dims[order[k]];
  }
  std::vector<idx> out(static_cast<size_t>(rows));
  std::vector<idx> counter(n_row_axes, 0);
  idx core = 0;
  for (idx i = 0; i < rows; ++i) {
    out[i] = core;
    for (int a = 0; a < n_row_axes; ++a) {  // odometer, axis 0 fastest (R's order)
      core += stride[a];
      if (++counter[a] < dims[a]) break;
      core -= stride[a] * dims[a];
      counter[a] = 0;
    }
  }
  return out;
}

// Whether order[k] == k for k >= from (those axes keep R's axis order).
inline bool keeps_tail(const Rcpp::IntegerVector& order, int from) {
  for (int k = from; k < order.size(); ++k)
    if (order[k] != k) return false;
  return true;
}

// Keras-shaped weight (R array) -> row-major copy.
template <class T>
mh::Buffer<T> weight_to_core(SEXP w) {
  const int r = static_cast<int>(r_dims(w).size());
  Rcpp::IntegerVector order(r);
  for (int k = 0; k < r; ++k) order[k] = k;
  return to_core<T>(w, order);
}

// Row-major weight gradient -> R array with Keras dims.
template <class T>
Rcpp::NumericVector weight_from_core(const T* buf, SEXP like) {
  std::vector<idx> d = r_dims(like);
  Rcpp::IntegerVector dims(d.size()), order(d.size());
  for (size_t k = 0; k < d.size(); ++k) {
    dims[k] = static_cast<int>(d[k]);
    order[k] = static_cast<int>(k);
  }
  return from_core(buf, dims, order);
}

}  // namespace mhglue
