// Large work buffers: their own 2 MiB-aligned mappings with transparent huge
// pages, and a small process-wide cache of released mappings.
//
// Why: every layer call allocates its projections and gradients anew, and a
// fresh mapping costs one page fault plus the kernel zeroing every page on
// first touch. At B = 32, T = 128, E = 256 that zeroing was 10-15% of a
// forward+backward call (bench/README.md). Mappings released by one call are
// kept (up to kLargeBufferCacheBytes in all) and handed to the next request
// of their size, already mapped and populated (the limit can be changed with
// set_large_buffer_cache_limit()). The cost: up to that much memory stays
// resident between calls (measured: the T = S = 16384 forward+backward
// benchmark peaks at 269 MB with the cache against 229 MB without, its kept
// buffers on top of the R arrays the call returns; the 128 MiB default holds
// the ~100 MiB of buffers of a forward+backward call at B = 8, T = 512,
// E = 512). A request that no kept mapping fits first unmaps kept
// mappings while live + kept bytes would exceed the largest live total so far
// by more than the cache's size.
//
// This cache and the SIMD choice (cpu_dispatch.h) are the core's only process-wide state. It never affects results:
// a buffer's contents are undefined either way (Buffer<T> never initialises),
// and set_large_buffer_poison(true) fills every large buffer handed out with
// 0xFF bytes (NaN in float and double) so tests can prove no kernel reads
// memory it has not written. Thread-safe (one mutex); buffers are acquired
// and released from worker threads too.
#pragma once

#include <cstddef>

namespace mh {

// Buffers of at least this many bytes go through large_buffer_acquire();
// smaller ones come from the heap.
constexpr std::size_t kHugeBufferBytes = std::size_t(4) << 20;
constexpr std::size_t kHugePageBytes = std::size_t(2) << 20;
// At most this many bytes (by default; set_large_buffer_cache_limit()), and
// this many mappings, are kept for reuse. A training step on native tensors
// releases all its activations and gradients at once (dozens of buffers of
// a few MiB at B = 32, T = 128, E = 256): the mapping count must not be the
// limit that evicts them before the next step asks for the same sizes.
constexpr std::size_t kLargeBufferCacheBytes = std::size_t(128) << 20;
constexpr std::size_t kLargeBufferCacheBlocks = 64;

// The bytes actually mapped for a request of `bytes` (whole huge pages).
inline std::size_t large_buffer_mapped_bytes(std::size_t bytes) {
  return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
}

// A 2 MiB-aligned block of at least `bytes` bytes (contents undefined): the
// most recently released cached mapping of exactly
// large_buffer_mapped_bytes(bytes); else a new mapping, after unmapping kept
// ones (least recently released first) while live + kept bytes would exceed
// the largest live total so far plus the cache's limit. Throws
// std::bad_alloc.
void* large_buffer_acquire(std::size_t bytes);

// Returns a block from large_buffer_acquire() with the same `bytes`: kept
// for reuse, or unmapped when the cache would exceed its limits (the least
// recently released mappings go first).
void large_buffer_release(void* p, std::size_t bytes);

struct LargeBufferCacheStats {
  std::size_t blocks = 0;  // mappings kept now
  std::size_t bytes = 0;   // their total size
  std::size_t hits = 0;    // acquisitions served from the cache so far
  std::size_t misses = 0;  // acquisitions that mapped new memory so far
  std::size_t live_bytes = 0;       // mappings handed out and not yet released
  std::size_t peak_live_bytes = 0;  // the largest live_bytes so far
};
LargeBufferCacheStats large_buffer_cache_stats();

// Unmaps every kept mapping.
void large_buffer_cache_clear();

// The most bytes of released mappings kept for reuse (default
// kLargeBufferCacheBytes; 0 keeps none). Lowering it unmaps kept mappings,
// least recently released first, until they fit.
void set_large_buffer_cache_limit(std::size_t bytes);
std::size_t large_buffer_cache_limit();

// Offers transparent huge pages for the 2 MiB-aligned pages inside
// [p, p + bytes) of memory the caller owns but has not touched yet (e.g. a
// freshly allocated R vector the core will fill): first-touch page faults
// then map 2 MiB at a time instead of 4 KiB. A hint; no effect elsewhere
// than Linux or below one aligned huge page.
void advise_huge_pages(void* p, std::size_t bytes);

// Maps in the pages of [p, p + bytes): memory the caller owns, has not
// touched yet and will overwrite in full (a fresh R vector the core fills),
// with one madvise(MADV_POPULATE_WRITE) on Linux (one write per 4 KiB page
// elsewhere). Contents afterwards are unspecified. Does nothing below
// kHugeBufferBytes. Why: the output projection writes its rows into every
// column of the result, so its threads fault the same (huge) pages at once
// and wait for each other. Measured at B = 32, T = 128, E = 256 (8 MB
// output, 2 threads): the output projection took 6.5 ms with the faults
// inside it, 3.65 ms after a 1.2 ms populate; the input projections'
// backward 23-26 ms with its three fresh gradients faulted inside, 19 ms
// after 3.8 ms of populates. One thread on purpose: the same populate split
// over 2 threads took 4.4 ms (the two contend in the kernel).
void populate_pages(void* p, std::size_t bytes);

// When on, every block handed out is first filled with 0xFF bytes.
void set_large_buffer_poison(bool on);

}  // namespace mh
