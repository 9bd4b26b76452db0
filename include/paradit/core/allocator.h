// Allocators. Device memory goes through a CachingAllocator: cudaMalloc/cudaFree synchronise the device and
// cost tens of microseconds, so freed blocks are kept in size-bucketed free lists and handed out again.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "paradit/core/device.h"

namespace paradit {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;
  // Never returns null: throws Error(kOutOfMemory) naming the size when memory is exhausted.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr) = 0;
};

// Host memory, 64-byte aligned.
Allocator& cpu_allocator();

// What a CachingAllocator sits on (cudaMalloc/cudaFree for a GPU). raw_allocate returns null when out of memory.
class RawAllocator {
 public:
  virtual ~RawAllocator() = default;
  virtual Device device() const = 0;
  virtual void* raw_allocate(size_t bytes) = 0;
  virtual void raw_free(void* ptr) = 0;
};

struct AllocatorStats {
  size_t in_use = 0;       // bytes handed out and not yet returned
  size_t peak_in_use = 0;  // high-water mark of in_use since the last reset_peak()
  size_t reserved = 0;     // bytes held from the raw allocator (in use + cached)
  size_t raw_allocs = 0;   // calls that reached the raw allocator
};

class CachingAllocator : public Allocator {
 public:
  explicit CachingAllocator(std::unique_ptr<RawAllocator> raw);
  ~CachingAllocator() override;

  Device device() const override { return raw_->device(); }
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr) override;

  // Returns every cached (free) block to the raw allocator.
  void release_cached();
  AllocatorStats stats() const;
  void reset_peak();

  // Sizes are rounded up to this granularity so that nearby sizes share blocks.
  static size_t round_size(size_t bytes);

 private:
  std::unique_ptr<RawAllocator> raw_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;           // size -> block
  std::unordered_map<void*, size_t> live_;      // block -> size
  AllocatorStats stats_;
};

}  // namespace paradit
