// Large work buffers and their cache: see large_buffers.h.
#include "large_buffers.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mh {

namespace {

struct CachedBlock {
  void* p;
  std::size_t len;     // mapped bytes
  std::uint64_t when;  // release order (larger = more recent)
};

struct Cache {
  std::mutex lock;
  std::vector<CachedBlock> blocks;
  std::size_t bytes = 0;
  std::uint64_t clock = 0;
  std::size_t hits = 0, misses = 0;
  std::unordered_map<void*, std::size_t> live;  // blocks handed out: their mapped length
  std::size_t live_bytes = 0;  // total length of the blocks handed out
  std::size_t peak_live = 0;   // the largest live_bytes so far
  std::size_t limit = kLargeBufferCacheBytes;  // set_large_buffer_cache_limit()
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: safe in exit-time releases
  return *c;
}

std::atomic<bool> poison{false};

// Moves the least recently released kept mapping of `c` to `out` (the
// caller unmaps it outside the lock). `c.blocks` must not be empty.
void evict_oldest(Cache& c, std::vector<CachedBlock>* out) {
  const auto oldest = std::min_element(
      c.blocks.begin(), c.blocks.end(),
      [](const CachedBlock& a, const CachedBlock& b) { return a.when < b.when; });
  out->push_back(*oldest);
  c.bytes -= oldest->len;
  c.blocks.erase(oldest);
}

#if defined(__linux__)
void* map_new(std::size_t len) {
  const std::size_t over = len + kHugePageBytes;
  void* raw = mmap(nullptr, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = (start + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  if (aligned > start) munmap(raw, aligned - start);
  const std::size_t tail = over - (aligned - start) - len;
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + len), tail);
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);  // a hint only
#endif
  return reinterpret_cast<void*>(aligned);
}
void unmap(void* p, std::size_t len) { munmap(p, len); }
#else
void* map_new(std::size_t len) { return ::operator new(len, std::align_val_t(kHugePageBytes)); }
void unmap(void* p, std::size_t) { ::operator delete(p, std::align_val_t(kHugePageBytes)); }
#endif

}  // namespace

void* large_buffer_acquire(std::size_t bytes) {
  const std::size_t len = large_buffer_mapped_bytes(bytes);
  void* p = nullptr;
  std::vector<CachedBlock> flushed;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> guard(c.lock);
    // The most recently released mapping of exactly this length (a larger
    // one would keep pages resident that this request does not need).
    std::size_t best = c.blocks.size();
    for (std::size_t i = 0; i < c.blocks.size(); ++i) {
      if (c.blocks[i].len == len && (best == c.blocks.size() || c.blocks[i].when > c.blocks[best].when))
        best = i;
    }
    if (best < c.blocks.size()) {
      p = c.blocks[best].p;
      c.bytes -= c.blocks[best].len;
      c.live[p] = c.blocks[best].len;
      c.blocks.erase(c.blocks.begin() + static_cast<std::ptrdiff_t>(best));
      ++c.hits;
      c.live_bytes += len;
    } else {
      // A miss first unmaps kept mappings, least recently released first,
      // while live + new + kept bytes would exceed the largest live total so
      // far by more than the cache's limit: the cache then raises the
      // peak of the large buffers by at most its own size. (Evicting down to
      // the peak itself made later requests of the same call miss in turn.)
      ++c.misses;
      const std::size_t need = c.live_bytes + len;
      while (!c.blocks.empty() && need + c.bytes > c.peak_live + c.limit)
        evict_oldest(c, &flushed);
      c.live_bytes += len;  // reserved now, mapped below
    }
    c.peak_live = std::max(c.peak_live, c.live_bytes);
  }
  for (const CachedBlock& b : flushed) unmap(b.p, b.len);
  if (!p) {
    try {
      p = map_new(len);
      Cache& c = cache();
      std::lock_guard<std::mutex> guard(c.lock);
      c.live[p] = len;
    } catch (...) {
      Cache& c = cache();
      {
        std::lock_guard<std::mutex> guard(c.lock);
        c.live_bytes -= len;
        if (p) c.live.erase(p);
      }
      if (p) unmap(p, len);
      throw;
    }
  }
  if (poison.load(std::memory_order_relaxed)) std::memset(p, 0xFF, len);
  return p;
}

void large_buffer_release(void* p, std::size_t bytes) {
  if (!p) return;
  std::vector<CachedBlock> evicted;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> guard(c.lock);
    std::size_t len = large_buffer_mapped_bytes(bytes);
    const auto it = c.live.find(p);
    if (it != c.live.end()) {
      len = it->second;
      c.live.erase(it);
    }
    c.live_bytes -= std::min(c.live_bytes, len);
    if (len > c.limit) {
      evicted.push_back({p, len, 0});
    } else {
      c.blocks.push_back({p, len, ++c.clock});
      c.bytes += len;
      // Over a limit: the least recently released mappings go first.
      while (c.bytes > c.limit || c.blocks.size() > kLargeBufferCacheBlocks)
        evict_oldest(c, &evicted);
    }
  }
  for (const CachedBlock& b : evicted) unmap(b.p, b.len);  // outside the lock
}

LargeBufferCacheStats large_buffer_cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> guard(c.lock);
  LargeBufferCacheStats s;
  s.blocks = c.blocks.size();
  s.bytes = c.bytes;
  s.hits = c.hits;
  s.misses = c.misses;
  s.live_bytes = c.live_bytes;
  s.peak_live_bytes = c.peak_live;
  return s;
}

void large_buffer_cache_clear() {
  std::vector<CachedBlock> all;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> guard(c.lock);
    all.swap(c.blocks);
    c.bytes = 0;
  }
  for (const CachedBlock& b : all) unmap(b.p, b.len);
}

void set_large_buffer_cache_limit(std::size_t bytes) {
  std::vector<CachedBlock> evicted;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> guard(c.lock);
    c.limit = bytes;
    while (c.bytes > c.limit) evict_oldest(c, &evicted);
  }
  for (const CachedBlock& b : evicted) unmap(b.p, b.len);  // outside the lock
}

std::size_t large_buffer_cache_limit() {
  Cache& c = cache();
  std::lock_guard<std::mutex> guard(c.lock);
  return c.limit;
}

void advise_huge_pages(void* p, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t lo = (start + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  const std::uintptr_t hi = (start + bytes) / kHugePageBytes * kHugePageBytes;
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

void populate_pages(void* p, std::size_t bytes) {
  if (!p || bytes < kHugeBufferBytes) return;
  constexpr std::uintptr_t kPage = 4096;
  const std::uintptr_t lo = reinterpret_cast<std::uintptr_t>(p), hi = lo + bytes;
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
  // The whole pages inside [lo, hi): madvise needs an aligned start, and
  // the partial first page holds R's vector header (already mapped).
  const std::uintptr_t a = (lo + kPage - 1) / kPage * kPage, b = hi / kPage * kPage;
  if (b > a && madvise(reinterpret_cast<void*>(a), b - a, MADV_POPULATE_WRITE) == 0) return;
#endif
  // Elsewhere (or a kernel before 5.14): one write per page. The caller
  // overwrites every byte, so what is written does not matter.
  for (std::uintptr_t q = lo; q < hi; q = (q / kPage + 1) * kPage)
    *reinterpret_cast<volatile unsigned char*>(q) = 0;
}

void set_large_buffer_poison(bool on) { poison.store(on, std::memory_order_relaxed); }

}  // namespace mh
