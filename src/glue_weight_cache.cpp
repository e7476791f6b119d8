// The converted-weight cache: see glue_weight_cache.h.
#include "glue_weight_cache.h"

#include <cstring>
#include <list>
#include <string>
#include <type_traits>

#include "glue_convert.h"

namespace mhglue {

namespace {

struct Entry {
  SEXP weak = R_NilValue;  // key: the owner; value: list(weight array) (preserved)
  const void* owner = nullptr;
  std::string key;         // role, axis order and type
  R_xlen_t length = 0;
  uint64_t fingerprint = 0;
  std::shared_ptr<const void> buffer;  // mh::Buffer<T>
  std::size_t bytes = 0;
};

std::list<Entry>& entries() {  // most recently used first
  static std::list<Entry> e;
  return e;
}
std::size_t total_bytes = 0;
double hits = 0, misses = 0;  // lookups, for tests

// 16 values spread over the array, combined bit by bit.
uint64_t fingerprint_of(SEXP w) {
  const R_xlen_t n = Rf_xlength(w);
  uint64_t h = 1469598103934665603ULL;
  if (n == 0) return h;
  const int elt = TYPEOF(w) == REALSXP ? 8 : 4;
  const char* base = TYPEOF(w) == REALSXP ? reinterpret_cast<const char*>(REAL(w))
                                          : reinterpret_cast<const char*>(INTEGER(w));
  for (int k = 0; k < 16; ++k) {
    const R_xlen_t i = (n - 1) * k / 15;
    uint64_t v = 0;
    std::memcpy(&v, base + i * elt, static_cast<std::size_t>(elt));
    h = (h ^ v) * 1099511628211ULL;
  }
  return h;
}

// R keeps a weak reference (and so its value, the old weight array) on its
// list of weak references for as long as the key lives, released or not:
// clearing it (R_RunWeakRefFinalizer with no finalizer sets key and value to
// NULL) lets R collect the array now rather than with the layer.
void drop(std::list<Entry>::iterator it) {
  total_bytes -= it->bytes;
  R_RunWeakRefFinalizer(it->weak);
  R_ReleaseObject(it->weak);
  entries().erase(it);
}

}  // namespace

template <class T>
std::shared_ptr<const mh::Buffer<T>> cached_to_core(SEXP owner, const char* role, SEXP w,
                                                    const Rcpp::IntegerVector& order) {
  if (TYPEOF(owner) != ENVSXP) return std::make_shared<mh::Buffer<T>>(to_core<T>(w, order));
  std::string key(role);
  key += std::is_same<T, double>::value ? ":d:" : ":f:";
  for (int k = 0; k < order.size(); ++k) key += std::to_string(order[k]) + ",";
  const R_xlen_t n = Rf_xlength(w);
  std::list<Entry>& list = entries();
  for (auto it = list.begin(); it != list.end(); ++it) {
    if (it->owner != static_cast<const void*>(owner) || it->key != key) continue;
    if (R_WeakRefKey(it->weak) == owner && VECTOR_ELT(R_WeakRefValue(it->weak), 0) == w &&
        it->length == n &&
        it->fingerprint == fingerprint_of(w)) {
      list.splice(list.begin(), list, it);  // most recently used
      ++hits;
      return std::static_pointer_cast<const mh::Buffer<T>>(list.front().buffer);
    }
    drop(it);  // another array for this role now (or another layer at this address)
    break;
  }
  ++misses;
  auto buf = std::make_shared<mh::Buffer<T>>(to_core<T>(w, order));
  const std::size_t bytes = buf->size() * sizeof(T);
  if (bytes > kWeightCacheBytes / 4) return buf;  // too large to keep
  for (auto it = list.begin(); it != list.end();) {  // layers R has collected
    auto next = std::next(it);
    if (R_WeakRefKey(it->weak) == R_NilValue) drop(it);
    it = next;
  }
  while (!list.empty() && total_bytes + bytes > kWeightCacheBytes) drop(std::prev(list.end()));
  Entry e;
  // the value is a fresh list holding w: R_MakeWeakRef copies a value that
  // is referenced elsewhere, and the entry must hold the array itself
  SEXP holder = PROTECT(Rf_allocVector(VECSXP, 1));
  SET_VECTOR_ELT(holder, 0, w);
  e.weak = R_MakeWeakRef(owner, holder, R_NilValue, FALSE);
  UNPROTECT(1);
  R_PreserveObject(e.weak);
  e.owner = owner;
  e.key = key;
  e.length = n;
  e.fingerprint = fingerprint_of(w);
  e.buffer = buf;
  e.bytes = bytes;
  total_bytes += bytes;
  list.push_front(std::move(e));
  return buf;
}

template std::shared_ptr<const mh::Buffer<float>> cached_to_core<float>(SEXP, const char*, SEXP,
                                                                        const Rcpp::IntegerVector&);
template std::shared_ptr<const mh::Buffer<double>> cached_to_core<double>(SEXP, const char*, SEXP,
                                                                          const Rcpp::IntegerVector&);

}  // namespace mhglue

// The weight cache's entries, bytes, hits and misses (glue_weight_cache.h),
// for tests.
// [[Rcpp::export]]
Rcpp::NumericVector cpp_weight_cache_stats() {
  std::size_t n = 0;
  for (const auto& e : mhglue::entries()) n += e.weak != R_NilValue;
  return Rcpp::NumericVector::create(Rcpp::Named("entries") = static_cast<double>(n),
                                     Rcpp::Named("bytes") = static_cast<double>(mhglue::total_bytes),
                                     Rcpp::Named("hits") = mhglue::hits,
                                     Rcpp::Named("misses") = mhglue::misses);
}
