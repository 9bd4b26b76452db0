// A block of scratch device memory from the backend's allocator, given back when the op that took it leaves
// (normally or by an exception). Kernels still using it may be running then: reuse of the block is ordered
// after them because every op of the backend runs on its one stream.
#pragma once

#include <cstddef>

#include "paradit/core/allocator.h"

namespace paradit::cuda {

class Scratch {
 public:
  Scratch(Allocator& alloc, size_t bytes) : alloc_(alloc), ptr_(bytes > 0 ? alloc.allocate(bytes) : nullptr) {}
  ~Scratch() {
    if (ptr_) alloc_.deallocate(ptr_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  Allocator& alloc_;
  void* ptr_;
};

}  // namespace paradit::cuda
