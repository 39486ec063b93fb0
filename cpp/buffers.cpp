// Large memory blocks (see buffers.hpp).
#include "buffers.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fm {

namespace {
// alloc_block's alignment for a request of `bytes`, and the size it rounds the block up to
size_t block_align(size_t bytes) { return bytes >= kHugePage ? kHugePage : 64; }
size_t block_size(size_t bytes) {
  const size_t align = block_align(bytes);
  return (std::max<size_t>(bytes, 1) + align - 1) / align * align;
}
}  // namespace

void* alloc_block(size_t bytes, size_t* capacity) {
  if (bytes > (size_t(1) << 62)) throw std::bad_alloc();
  const size_t align = block_align(bytes), size = block_size(bytes);
  void* p = nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == kHugePage) {
    // map one huge page more than needed, then unmap the slack before and after the aligned block
    void* m = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t lo = reinterpret_cast<uintptr_t>(m), start = (lo + kHugePage - 1) / kHugePage * kHugePage;
    if (start > lo) munmap(m, start - lo);
    munmap(reinterpret_cast<void*>(start + size), lo + kHugePage - start);  // start < lo + kHugePage
    p = reinterpret_cast<void*>(start);
    madvise(p, size, MADV_HUGEPAGE);
  }
#endif
  if (!p) p = std::aligned_alloc(align, size);  // aligned_alloc: size a multiple of align
  if (!p) throw std::bad_alloc();
  if (capacity) *capacity = size;
  return p;
}

void free_block(void* p, size_t capacity) {
  if (!p) return;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (capacity >= kHugePage) {
    munmap(p, capacity);
    return;
  }
#endif
  (void)capacity;
  std::free(p);
}

float* ScratchBuffer::get(size_t n) {
  if (bytes_ < n * sizeof(float)) {
    size_t cap = 0;
    void* q = alloc_block(n * sizeof(float), &cap);  // before freeing: a new address
    free_block(p_, bytes_);
    p_ = static_cast<float*>(q), bytes_ = cap;
  }
  return p_;
}

ScratchBuffer::~ScratchBuffer() { free_block(p_, bytes_); }

namespace {
struct Pool {
  std::mutex m;
  std::unordered_map<void*, size_t> live;        // handed out: block -> capacity
  std::vector<std::pair<void*, size_t>> cached;  // released, oldest first
  size_t cached_bytes = 0;
};
// never destroyed: an output array may be released after the module's static destructors ran
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}
}  // namespace

bool pool_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("FASTMNIST_OUTPUT_POOL");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

void* pooled_alloc(size_t bytes) {
  Pool& P = pool();
  {
    std::lock_guard<std::mutex> lock(P.m);
    // the smallest released block that holds `bytes` and is at most half again as large as the
    // block alloc_block would make for it (2 MB steps: 2.3 MB outputs take 4 MB blocks)
    const size_t fresh = block_size(bytes), most = fresh + fresh / 2;
    size_t best = P.cached.size();
    for (size_t i = 0; i < P.cached.size(); ++i) {
      const size_t cap = P.cached[i].second;
      if (cap >= bytes && cap <= most && (best == P.cached.size() || cap < P.cached[best].second)) best = i;
    }
    if (best < P.cached.size()) {
      const auto blk = P.cached[best];
      P.cached.erase(P.cached.begin() + std::ptrdiff_t(best));
      P.cached_bytes -= blk.second;
      P.live.emplace(blk.first, blk.second);
      return blk.first;
    }
  }
  size_t cap = 0;
  void* p = alloc_block(bytes, &cap);
  std::lock_guard<std::mutex> lock(P.m);
  P.live.emplace(p, cap);
  return p;
}

void pooled_release(void* p) {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.m);
  const auto it = P.live.find(p);
  if (it == P.live.end()) return;  // not ours: nothing to do (never happens through the bindings)
  P.cached.emplace_back(p, it->second);
  P.cached_bytes += it->second;
  P.live.erase(it);
  while (P.cached_bytes > kPoolCap) {
    free_block(P.cached.front().first, P.cached.front().second);
    P.cached_bytes -= P.cached.front().second;
    P.cached.erase(P.cached.begin());
  }
}

PoolStats pool_stats() {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.m);
  return {P.live.size(), P.cached.size(), P.cached_bytes};
}

void pool_trim() {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.m);
  for (const auto& blk : P.cached) free_block(blk.first, blk.second);
  P.cached.clear();
  P.cached_bytes = 0;
}

}  // namespace fm
