// The C library allocator's thresholds, set once when the package loads
// (R/zzz.R). Every R vector above 128 KiB (a batch, a layer's result, a
// weight gradient, an optimizer's new weights, a decoding cache) comes from
// malloc(); by default glibc maps each such block freshly and unmaps it when
// R frees it, so every new array pays one page fault per 4 KiB page touched
// (on virtual machines several microseconds each: a 1.2 MB key/value cache
// copied per attention call cost more than the call's arithmetic). With the
// thresholds below, blocks up to kMmapThreshold come from the heap and are
// reused, and up to kTrimThreshold of free memory at the heap's top is kept
// instead of being returned at once. glibc only; elsewhere nothing changes.
// The environment variable MULTIHEAD_MALLOC_TUNING=off leaves the defaults.
#include <Rcpp.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

constexpr int kMmapThreshold = 32 << 20;   // glibc's own largest dynamic threshold
constexpr int kTrimThreshold = 128 << 20;

bool tuned = false;

}  // namespace

// Sets the thresholds (once); returns whether they are set.
// [[Rcpp::export]]
bool cpp_tune_malloc() {
#if defined(__GLIBC__)
  if (!tuned) tuned = mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1;
#endif
  return tuned;
}

// Whether cpp_tune_malloc() set them.
// [[Rcpp::export]]
bool cpp_malloc_tuned() { return tuned; }
