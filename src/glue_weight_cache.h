// Layer weights converted to the core's type and layout, cached between
// calls: a layer called again with the same weight arrays (inference,
// decoding token by token, the backward pass after its forward in a training
// step) does not convert them again.
//
// An entry belongs to a layer (its state environment, the `owner`) and a
// role (e.g. "kernel"): it holds an R weak reference whose key is the
// owner and whose value is the weight array converted, so the entry never
// keeps the layer alive, keeps that one array alive while the layer lives
// (no other array can take its address), and dies with the layer (dropped at
// a later insertion once R has collected the layer). A call with another
// array for the same role replaces the entry. R does not modify a shared
// array in place; as a guard against code that does, a hit also needs the
// same length and the same values at 16 sampled positions. At most
// kWeightCacheBytes of converted values are kept (least recently used
// evicted first); only the main R thread uses the cache.
#pragma once

#include <Rcpp.h>

#include <memory>

#include "core/layout.h"

namespace mhglue {

constexpr std::size_t kWeightCacheBytes = std::size_t(512) << 20;

// to_core<T>(w, order) (glue_convert.h), from the cache of layer `owner`
// (an environment; anything else: converted without caching).
template <class T>
std::shared_ptr<const mh::Buffer<T>> cached_to_core(SEXP owner, const char* role, SEXP w,
                                                    const Rcpp::IntegerVector& order);

}  // namespace mhglue
