// The cache of large work buffers (large_buffers.h): released mappings are
// reused for requests they fit, the limits hold, poisoning fills with 0xFF,
// and Buffer<T> goes through it from kHugeBufferBytes up.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "large_buffers.h"
#include "layout.h"
#include "test_util.h"

namespace {

constexpr std::size_t MiB = std::size_t(1) << 20;

TEST(LargeBuffers, ReleasedMappingsAreReusedForRequestsOfTheirSize) {
  mh::large_buffer_cache_clear();
  void* a = mh::large_buffer_acquire(5 * MiB);  // maps 6 MiB
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % mh::kHugePageBytes, 0u);
  std::memset(a, 1, 5 * MiB);
  mh::large_buffer_release(a, 5 * MiB);
  EXPECT_EQ(mh::large_buffer_cache_stats().blocks, 1u);
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 6 * MiB);
  const std::size_t hits = mh::large_buffer_cache_stats().hits;
  void* b = mh::large_buffer_acquire(6 * MiB - 100);  // also 6 MiB mapped: reused
  EXPECT_EQ(b, a);
  EXPECT_EQ(mh::large_buffer_cache_stats().hits, hits + 1);
  EXPECT_EQ(mh::large_buffer_cache_stats().blocks, 0u);
  mh::large_buffer_release(b, 6 * MiB - 100);
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 6 * MiB);
  const std::size_t misses = mh::large_buffer_cache_stats().misses;
  void* c = mh::large_buffer_acquire(4 * MiB);  // another size: a new mapping
  EXPECT_EQ(mh::large_buffer_cache_stats().misses, misses + 1);
  EXPECT_NE(c, a);  // the 6 MiB mapping is still kept (4 + 6 MiB is within the limits)
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 6 * MiB);
  EXPECT_EQ(mh::large_buffer_cache_stats().live_bytes, 4 * MiB);
  mh::large_buffer_release(c, 4 * MiB);
  EXPECT_EQ(mh::large_buffer_cache_stats().live_bytes, 0u);
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 10 * MiB);
  mh::large_buffer_cache_clear();
  EXPECT_EQ(mh::large_buffer_cache_stats().blocks, 0u);
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 0u);
}

TEST(LargeBuffers, CacheLimitsHoldAndOldestGoFirst) {
  mh::large_buffer_cache_clear();
  std::vector<void*> blocks;
  for (std::size_t i = 0; i < mh::kLargeBufferCacheBlocks + 4; ++i)
    blocks.push_back(mh::large_buffer_acquire(4 * MiB));
  for (void* p : blocks) mh::large_buffer_release(p, 4 * MiB);
  mh::LargeBufferCacheStats s = mh::large_buffer_cache_stats();
  EXPECT_LE(s.blocks, mh::kLargeBufferCacheBlocks);
  EXPECT_LE(s.bytes, mh::kLargeBufferCacheBytes);
  // The most recently released mapping is still there: the next request gets
  // one of the kept (most recent) ones, never an evicted one.
  void* again = mh::large_buffer_acquire(4 * MiB);
  bool recent = false;
  for (std::size_t i = blocks.size() - s.blocks; i < blocks.size(); ++i) recent |= again == blocks[i];
  EXPECT_TRUE(recent);
  mh::large_buffer_release(again, 4 * MiB);
  // A miss keeps live + kept bytes within the largest live total so far
  // (here 20 x 4 MiB) plus the cache's size, and a mapping larger than the
  // whole cache is never kept.
  const std::size_t peak = mh::large_buffer_cache_stats().peak_live_bytes;
  EXPECT_EQ(peak, blocks.size() * 4 * MiB);
  const std::size_t big = 3 * peak;  // beyond the earlier peak: kept mappings go first
  void* huge = mh::large_buffer_acquire(big);
  s = mh::large_buffer_cache_stats();
  EXPECT_EQ(s.blocks, 0u);
  EXPECT_EQ(s.live_bytes, mh::large_buffer_mapped_bytes(big));
  mh::large_buffer_release(huge, big);
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 0u);  // too large to keep
  EXPECT_EQ(mh::large_buffer_cache_stats().live_bytes, 0u);
  // Within the limits, a miss leaves the kept mappings alone.
  void* x = mh::large_buffer_acquire(8 * MiB);
  mh::large_buffer_release(x, 8 * MiB);
  void* y = mh::large_buffer_acquire(6 * MiB);
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 8 * MiB);
  mh::large_buffer_release(y, 6 * MiB);
  mh::large_buffer_cache_clear();
}

TEST(LargeBuffers, SettableLimitEvictsAtOnceAndBoundsWhatIsKept) {
  mh::large_buffer_cache_clear();
  EXPECT_EQ(mh::large_buffer_cache_limit(), mh::kLargeBufferCacheBytes);
  std::vector<void*> held;
  for (int i = 0; i < 8; ++i) held.push_back(mh::large_buffer_acquire(8 * MiB));  // 64 MiB live
  mh::set_large_buffer_cache_limit(96 * MiB);
  for (void* p : held) mh::large_buffer_release(p, 8 * MiB);
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 64 * MiB);  // above the default, within 96
  mh::set_large_buffer_cache_limit(20 * MiB);  // lowering unmaps down to the limit
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 16 * MiB);
  mh::set_large_buffer_cache_limit(0);
  EXPECT_EQ(mh::large_buffer_cache_stats().bytes, 0u);
  void* p = mh::large_buffer_acquire(8 * MiB);
  mh::large_buffer_release(p, 8 * MiB);  // nothing kept with a limit of 0
  EXPECT_EQ(mh::large_buffer_cache_stats().blocks, 0u);
  mh::set_large_buffer_cache_limit(mh::kLargeBufferCacheBytes);
  EXPECT_EQ(mh::large_buffer_cache_limit(), mh::kLargeBufferCacheBytes);
}

#if defined(__linux__)
// Pages of [p, p + bytes) resident now (mincore), whole pages only.
std::size_t resident_pages(void* p, std::size_t bytes) {
  std::vector<unsigned char> v(bytes / 4096);
  if (mincore(p, bytes, v.data()) != 0) return 0;
  std::size_t n = 0;
  for (unsigned char c : v) n += c & 1u;
  return n;
}

TEST(LargeBuffers, PopulatePagesMapsInFreshMemoryFromFourMiBUp) {
  const std::size_t len = 9 * MiB;
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  EXPECT_EQ(resident_pages(m, len), 0u);
  // an unaligned start, as R's vector data (after its header) has
  char* data = static_cast<char*>(m) + 48;
  mh::populate_pages(data, 2 * MiB);  // below kHugeBufferBytes: nothing
  EXPECT_EQ(resident_pages(m, len), 0u);
  mh::populate_pages(data, 8 * MiB);
  // every whole page after the first (partial) one, up to the last whole page
  EXPECT_GE(resident_pages(static_cast<char*>(m) + 4096, 8 * MiB - 4096), 8 * MiB / 4096 - 1);
  std::memset(data, 7, 8 * MiB);  // still plain writable memory
  EXPECT_EQ(data[8 * MiB - 1], 7);
  munmap(m, len);
  mh::populate_pages(nullptr, 8 * MiB);  // a null pointer is ignored
}
#endif

TEST(LargeBuffers, PoisonFillsEveryHandedOutBlock) {
  mh::large_buffer_cache_clear();
  mh::set_large_buffer_poison(true);
  mh::Buffer<float> x(mh::kHugeBufferBytes / sizeof(float) + 3);  // through the cache
  bool all_nan = true;
  for (float v : x) all_nan = all_nan && std::isnan(v);
  EXPECT_TRUE(all_nan);
  for (float& v : x) v = 1.0f;
  mh::Buffer<float>().swap(x);  // released into the cache
  mh::Buffer<double> y(mh::kHugeBufferBytes / sizeof(double));  // reused, poisoned again
  all_nan = true;
  for (double v : y) all_nan = all_nan && std::isnan(v);
  EXPECT_TRUE(all_nan);
  mh::set_large_buffer_poison(false);
  mh::Buffer<double>().swap(y);
  mh::large_buffer_cache_clear();
}

}  // namespace
