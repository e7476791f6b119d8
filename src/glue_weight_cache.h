// Layer weights converted to the core's type and layout, cached between
// calls: a layer called again with the same weight arrays (inference,
// decoding token by token, the backward pass after its forward in a training
// step) does not convert them again.
//
// An entry is keyed by the R array itself, which the cache references from
// an R list of its own: while an entry exists its array cannot be freed, so
// no other array can take its address, and R never modifies it in place (it
// is shared). An entry whose array nobody else references any more
// (!MAYBE_SHARED: only the cache's list holds it) is dropped at the next
// insertion, so weights replaced by an optimizer step leave with their
// arrays. As a guard against C code that writes into a shared array, a hit
// also needs the same length and the same values at 16 sampled positions.
// At most kWeightCacheEntries entries and kWeightCacheBytes of converted
// values (least recently used evicted first); only the main R thread uses
// it.
#pragma once

#include <Rcpp.h>

#include <memory>

#include "core/layout.h"

namespace mhglue {

constexpr std::size_t kWeightCacheBytes = std::size_t(256) << 20;
constexpr R_xlen_t kWeightCacheEntries = 1024;

// to_core<T>(w, order) (glue_convert.h), from the cache when possible.
template <class T>
std::shared_ptr<const mh::Buffer<T>> cached_to_core(SEXP w, const Rcpp::IntegerVector& order);

// The number of entries and their bytes (for tests).
Rcpp::NumericVector weight_cache_stats();

}  // namespace mhglue
