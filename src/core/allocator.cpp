#include "paradit/core/allocator.h"

#include <cstdlib>

#include "paradit/core/status.h"

namespace paradit {

namespace {
class CpuAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cpu(); }
  void* allocate(size_t bytes) override {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded ? rounded : 64);
    if (!p) PD_THROW(kOutOfMemory, "host allocation of ", bytes, " bytes failed");
    return p;
  }
  void deallocate(void* ptr) override { std::free(ptr); }
};
}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator a;
  return a;
}

CachingAllocator::CachingAllocator(std::unique_ptr<RawAllocator> raw) : raw_(std::move(raw)) {}

CachingAllocator::~CachingAllocator() {
  release_cached();
  // Blocks still live belong to tensors that outlive the allocator; returning them now would leave those
  // tensors dangling, so they are freed only when the process ends.
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes <= 512) return 512;
  if (bytes <= (size_t(1) << 20)) return (bytes + 511) / 512 * 512;
  return (bytes + (size_t(2) << 20) - 1) / (size_t(2) << 20) * (size_t(2) << 20);
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  void* p = nullptr;
  // Best fit, but never hand out a block more than twice the request: that would strand memory.
  auto it = free_.lower_bound(size);
  if (it != free_.end() && it->first <= 2 * size) {
    p = it->second;
    live_[p] = it->first;
    stats_.in_use += it->first;
    free_.erase(it);
  } else {
    p = raw_->raw_allocate(size);
    if (!p && !free_.empty()) {  // out of memory: give the cache back and try once more
      for (auto& [s, q] : free_) { raw_->raw_free(q); stats_.reserved -= s; }
      free_.clear();
      p = raw_->raw_allocate(size);
    }
    if (!p) {
      PD_THROW(kOutOfMemory, "cannot allocate ", bytes, " bytes on ", raw_->device().str(), " (", stats_.in_use,
               " bytes in use)");
    }
    ++stats_.raw_allocs;
    stats_.reserved += size;
    stats_.in_use += size;
    live_[p] = size;
  }
  if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
  return p;
}

void CachingAllocator::deallocate(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours (cannot happen through Tensor); ignoring beats corrupting the cache
  stats_.in_use -= it->second;
  free_.emplace(it->second, ptr);
  live_.erase(it);
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [s, p] : free_) {
    raw_->raw_free(p);
    stats_.reserved -= s;
  }
  free_.clear();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_in_use = stats_.in_use;
}

}  // namespace paradit
