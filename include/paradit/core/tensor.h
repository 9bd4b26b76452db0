// Tensor: a typed, shaped, strided view of memory on one device, owning it (shared) or borrowing it.
//
// Strides are in elements. Views (slice, view, select) share the storage of their source; nothing here
// launches device work — copying and arithmetic belong to the backends.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "paradit/core/allocator.h"
#include "paradit/core/device.h"
#include "paradit/core/dtype.h"

namespace paradit {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
Shape contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);

// A block of memory and how to give it back.
class Storage {
 public:
  Storage(void* ptr, size_t bytes, Device device, Allocator* owner, std::shared_ptr<void> keep_alive = nullptr)
      : ptr_(ptr), bytes_(bytes), device_(device), owner_(owner), keep_alive_(std::move(keep_alive)) {}
  ~Storage() {
    if (owner_) owner_->deallocate(ptr_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* ptr_;
  size_t bytes_;
  Device device_;
  Allocator* owner_;                 // null when borrowed
  std::shared_ptr<void> keep_alive_;  // what a borrowed block lives in (a file mapping), if anything
};

class Tensor {
 public:
  Tensor() = default;

  // Fresh contiguous memory from the allocator (contents undefined).
  static Tensor empty(const Shape& shape, DType dtype, Allocator& alloc);
  // A view of memory someone else owns; it must outlive the tensor.
  static Tensor borrow(void* data, const Shape& shape, DType dtype, Device device);
  static Tensor borrow(void* data, const Shape& shape, const Shape& strides, DType dtype, Device device);
  // A view that keeps `owner` (say, a memory-mapped file) alive as long as any view of it exists.
  static Tensor borrow(void* data, const Shape& shape, DType dtype, Device device, std::shared_ptr<void> owner);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  int dim() const { return int(shape_.size()); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t size(int d) const { return shape_[norm_dim(d)]; }
  int64_t stride(int d) const { return strides_[norm_dim(d)]; }
  int64_t numel() const { return shape_numel(shape_); }
  size_t element_size() const { return dtype_size(dtype_); }
  size_t nbytes() const { return size_t(numel()) * element_size(); }
  bool is_contiguous() const;

  void* data() const { return static_cast<char*>(storage_->ptr()) + offset_ * int64_t(element_size()); }
  template <typename T>
  T* data_as() const { return static_cast<T*>(data()); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // Reshape a contiguous tensor (one dimension may be -1).
  Tensor view(const Shape& shape) const;
  // Elements [start, start+length) of dimension d.
  Tensor slice(int d, int64_t start, int64_t length) const;
  // Index i of dimension d, dropping that dimension.
  Tensor select(int d, int64_t i) const;
  // Split dimension d into (a, b) with a*b == size(d); one of them may be -1.
  Tensor unflatten(int d, int64_t a, int64_t b) const;
  // Swap two dimensions (a strided view).
  Tensor transpose(int d0, int d1) const;
  // Insert a dimension of size 1.
  Tensor unsqueeze(int d) const;

  std::string desc() const;  // "bf16[2, 4608, 3072] on cuda:0"

 private:
  int norm_dim(int d) const;
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // elements
  Shape shape_, strides_;
  DType dtype_ = DType::kF32;
};

}  // namespace paradit
