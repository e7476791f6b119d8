// Small Rcpp helpers used by the R layer: finiteness checks and build info.
#include <Rcpp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <Eigen/Core>

#include "core/cpu_dispatch.h"
#include "core/large_buffers.h"
#include "core/parallel.h"
#include "core/take_rows.h"
#include "glue_convert.h"

namespace {

// TRUE when x[0 .. n) holds no NA, NaN or Inf: a double is finite iff its
// exponent bits are not all ones. Fixed-size chunks without an early exit
// vectorise.
bool doubles_finite(const double* p, R_xlen_t n) {
  constexpr R_xlen_t kChunk = 1024;
  constexpr uint64_t kExponent = 0x7FF0000000000000ULL;
  R_xlen_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    uint64_t bad = 0;
    for (R_xlen_t j = 0; j < kChunk; ++j) {
      uint64_t bits;
      std::memcpy(&bits, p + i + j, sizeof bits);
      bad |= static_cast<uint64_t>((bits & kExponent) == kExponent);
    }
    if (bad) return false;
  }
  for (; i < n; ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

}  // namespace

// TRUE when every element of a numeric/integer/logical vector is finite
// (no NA, NaN or Inf). One pass, no allocation; doubles are split into fixed
// blocks over up to `threads` threads (inputs are often 1e6+ values; the
// answer does not depend on the split).
// [[Rcpp::export]]
bool cpp_all_finite(SEXP x, int threads = 1) {
  const R_xlen_t n = Rf_xlength(x);
  switch (TYPEOF(x)) {
    case REALSXP: {
      const double* p = REAL_RO(x);
      constexpr R_xlen_t kBlock = R_xlen_t(1) << 18;
      const long blocks = static_cast<long>((n + kBlock - 1) / kBlock);
      std::vector<char> ok(static_cast<size_t>(blocks), 1);
      mh::parallel_for(blocks, mh::threads_for_elements(static_cast<double>(n), threads),
                       [&](long b) {
                         const R_xlen_t i0 = b * kBlock;
                         ok[static_cast<size_t>(b)] = doubles_finite(p + i0, std::min(kBlock, n - i0));
                       });
      for (char v : ok)
        if (!v) return false;
      return true;
    }
    case INTSXP:
    case LGLSXP: {
      const int* p = INTEGER_RO(x);
      for (R_xlen_t i = 0; i < n; ++i)
        if (p[i] == NA_INTEGER) return false;
      return true;
    }
    default:
      return false;
  }
}

// [[Rcpp::export]]
int cpp_max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// The build and the SIMD path the core's dispatch chose (cpu_dispatch.h;
// the first call decides and caches it).
// [[Rcpp::export]]
Rcpp::List cpp_build_info() {
  const mh::SimdInfo& info = mh::simd_info();
#ifdef _OPENMP
  const bool openmp = true;
#else
  const bool openmp = false;
#endif
  return Rcpp::List::create(
      Rcpp::Named("simd") = std::string(mh::simd_path_name(info.path)),
      Rcpp::Named("simd_compiled") = info.compiled,
      Rcpp::Named("simd_cpu") = info.cpu,
      Rcpp::Named("simd_forced") = info.forced,
      Rcpp::Named("eigen_simd") = std::string(Eigen::SimdInstructionSetsInUse()),
      Rcpp::Named("openmp") = openmp,
      Rcpp::Named("eigen_version") =
          std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
          std::to_string(EIGEN_MINOR_VERSION));
}

// Rounds doubles to the nearest float32 value (weights and values of float32
// layers), keeping x's attributes; x itself when every value is float32
// already (NaN stays NaN, beyond float32's range becomes +-Inf).
// [[Rcpp::export]]
SEXP cpp_round_float32(SEXP x) {
  if (TYPEOF(x) != REALSXP) Rcpp::stop("cpp_round_float32: expected a double vector");
  const double* p = REAL_RO(x);
  const R_xlen_t n = Rf_xlength(x);
  // Values already float32 (what the kernels return) need no new vector.
  R_xlen_t first = 0;
  for (; first < n; ++first) {
    const double v = p[first];
    if (static_cast<double>(static_cast<float>(v)) != v && v == v) break;
  }
  if (first == n) return x;
  SEXP out = PROTECT(mhglue::fresh_numeric(n));
  double* o = REAL(out);
  std::copy(p, p + first, o);
  for (R_xlen_t i = first; i < n; ++i) o[i] = static_cast<double>(static_cast<float>(p[i]));
  SHALLOW_DUPLICATE_ATTRIB(out, x);
  UNPROTECT(1);
  return out;
}

// The samples `rows` (1-based, checked in R to lie in [1, dim(x)[1]]) of a
// double, integer or logical array along its first axis, as
// x[rows, , , drop = FALSE] without dimnames (the caller keeps `[` for
// arrays with dimnames), on up to `threads` threads. A double result is
// offered huge pages (fresh_numeric()): a batch is several megabytes.
// [[Rcpp::export]]
SEXP cpp_take_rows(SEXP x, Rcpp::IntegerVector rows, int threads) {
  const int type = TYPEOF(x);
  SEXP dim = Rf_getAttrib(x, R_DimSymbol);
  if ((type != REALSXP && type != INTSXP && type != LGLSXP) || Rf_isNull(dim)) {
    Rcpp::stop("cpp_take_rows: expected a double, integer or logical array");
  }
  const R_xlen_t n = INTEGER(dim)[0];
  const R_xlen_t cols = n > 0 ? Rf_xlength(x) / n : 0;
  const R_xlen_t k = rows.size();
  std::vector<int32_t> at(static_cast<size_t>(k));
  for (R_xlen_t j = 0; j < k; ++j) {
    if (rows[j] == NA_INTEGER || rows[j] < 1 || rows[j] > n) Rcpp::stop("cpp_take_rows: row out of range");
    at[static_cast<size_t>(j)] = rows[j] - 1;
  }
  SEXP out = PROTECT(type == REALSXP ? static_cast<SEXP>(mhglue::fresh_numeric(k * cols))
                                      : Rf_allocVector(type, k * cols));
  if (type == REALSXP) {
    mh::take_rows_colmajor(REAL_RO(x), n, cols, at.data(), k, REAL(out), threads);
  } else {
    mh::take_rows_colmajor(INTEGER_RO(x), n, cols, at.data(), k, INTEGER(out), threads);
  }
  SEXP od = PROTECT(Rf_duplicate(dim));
  INTEGER(od)[0] = static_cast<int>(k);
  Rf_setAttrib(out, R_DimSymbol, od);
  UNPROTECT(2);
  return out;
}

// The core's cache of large work buffers (src/core/large_buffers.h), for
// tests and diagnostics: "stats" reports it, "clear" empties it, "poison_on"
// / "poison_off" switch the 0xFF fill of every large buffer handed out.
// Returns the statistics after the action.
// [[Rcpp::export]]
Rcpp::List cpp_large_buffer_cache(std::string action) {
  if (action == "clear") {
    mh::large_buffer_cache_clear();
  } else if (action == "poison_on" || action == "poison_off") {
    mh::set_large_buffer_poison(action == "poison_on");
  } else if (action != "stats") {
    Rcpp::stop("cpp_large_buffer_cache: unknown action");
  }
  const mh::LargeBufferCacheStats s = mh::large_buffer_cache_stats();
  return Rcpp::List::create(Rcpp::Named("blocks") = static_cast<double>(s.blocks),
                            Rcpp::Named("bytes") = static_cast<double>(s.bytes),
                            Rcpp::Named("hits") = static_cast<double>(s.hits),
                            Rcpp::Named("misses") = static_cast<double>(s.misses));
}

// The buffer cache's limit in bytes: set when `bytes` is a number (R has
// checked it: a whole number >= 0; a negative number restores the default),
// returned either way.
// [[Rcpp::export]]
double cpp_buffer_cache_limit(SEXP bytes) {
  if (!Rf_isNull(bytes)) {
    const double b = Rf_asReal(bytes);
    mh::set_large_buffer_cache_limit(b < 0 ? mh::kLargeBufferCacheBytes : static_cast<std::size_t>(b));
  }
  return static_cast<double>(mh::large_buffer_cache_limit());
}
