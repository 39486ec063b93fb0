// Large memory blocks: the kernels' per-thread work buffers (SGEMM packing, Winograd, ...) and the
// kernel outputs handed to Python.
#pragma once
#include <cstddef>

namespace fm {

constexpr size_t kHugePage = size_t(2) << 20;

// A block of at least `bytes`: 64-byte aligned, its size rounded up to 64 bytes; from kHugePage on
// 2 MB aligned, rounded up to 2 MB and, on Linux, a fresh mapping of its own marked for transparent
// huge pages before its first touch (madvise; a hint, ignored where the kernel has them off; memory
// the heap had already touched would keep its 4 KB pages). The rounded size goes to *capacity, which
// free_block takes back. Throws std::bad_alloc.
void* alloc_block(size_t bytes, size_t* capacity);
void free_block(void* p, size_t capacity);

// A per-thread work buffer kept between calls (declare it thread_local), grown when a call needs
// more, never shrunk, so that a call does not map and fault in fresh pages: get(n) returns at least
// n floats from alloc_block (64-byte aligned; huge pages from 2 MB on), their contents undefined
// after it grew. A grown buffer never has the address of the one it replaced.
class ScratchBuffer {
 public:
  float* get(size_t n);
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer();

 private:
  float* p_ = nullptr;
  size_t bytes_ = 0;
};

// Kernel outputs of kPooledMin bytes or more come from alloc_block through a pool: a released
// block is kept for the next output that fits in it and would get a block at least two thirds its
// size from alloc_block (sizes in 2 MB steps), so that a training loop's same-sized outputs reuse
// blocks whose pages are already mapped (huge pages where the kernel gives them) instead of
// faulting fresh 4 KB pages in. At most kPoolCap bytes of released blocks are kept (the oldest are
// freed first); pool_trim frees them all. FASTMNIST_OUTPUT_POOL=0 (read once) turns the pool off:
// every output comes from numpy.
bool pool_enabled();
constexpr size_t kPooledMin = kHugePage;
constexpr size_t kPoolCap = size_t(256) << 20;
void* pooled_alloc(size_t bytes);
void pooled_release(void* p);
struct PoolStats {
  size_t live_blocks, cached_blocks, cached_bytes;
};
PoolStats pool_stats();
void pool_trim();

}  // namespace fm
