// SafetensorsFile: maps a file read-only and validates its whole header up front.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <tuple>

#include "io/safetensors_dtype.h"
#include "paradit/core/allocator.h"
#include "paradit/core/status.h"
#include "paradit/io/safetensors.h"

namespace paradit {
namespace {

using nlohmann::json;

// A whole file mapped read-only, unmapped when the last tensor viewing it is gone. PROT_READ (not a private
// writable mapping) because Linux charges writable private mappings against the commit limit: a 24 GB
// checkpoint would then fail to map on a 16 GB machine.
class Mapping {
 public:
  Mapping(void* ptr, size_t bytes) : ptr_(ptr), bytes_(bytes) {}
  ~Mapping() { munmap(ptr_, bytes_); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const char* data() const { return static_cast<const char*>(ptr_); }
  size_t size() const { return bytes_; }

 private:
  void* ptr_;
  size_t bytes_;
};

std::shared_ptr<Mapping> map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) PD_THROW(kNotFound, "no such file: ", path);
    PD_THROW(kIoError, "cannot open ", path, ": ", std::strerror(err));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    PD_THROW(kIoError, "cannot stat ", path, ": ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    PD_THROW(kInvalidArgument, path, " is not a regular file (a .safetensors file was expected)");
  }
  const size_t size = size_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    PD_THROW(kCorruptData, path, " is ", size, " bytes long: too short for a safetensors file (truncated?)");
  }
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file referenced
  if (p == MAP_FAILED) PD_THROW(kIoError, "cannot map ", path, " (", size, " bytes): ", std::strerror(err));
  return std::make_shared<Mapping>(p, size);
}

uint64_t read_le64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

// A non-negative integer from the header, or an error naming the field.
uint64_t header_uint(const json& v, const char* field, const std::string& name, const std::string& path) {
  if (!v.is_number_unsigned())
    PD_THROW(kCorruptData, "field ", field, " of tensor '", name, "' in ", path, " holds ", v.dump(),
             ", not a non-negative integer");
  return v.get<uint64_t>();
}

SafetensorsInfo parse_entry(const std::string& name, const json& e, uint64_t data_size, const std::string& path) {
  if (!e.is_object()) PD_THROW(kCorruptData, "header entry for tensor '", name, "' in ", path, " is not an object");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!e.contains(field)) PD_THROW(kCorruptData, "tensor '", name, "' in ", path, " has no field ", field);
  SafetensorsInfo info;
  const json& dt = e["dtype"];
  if (!dt.is_string()) PD_THROW(kCorruptData, "dtype of tensor '", name, "' in ", path, " is not a string");
  info.stored_dtype = dt.get<std::string>();
  const auto elem = io::safetensors_dtype_size(info.stored_dtype);
  if (!elem) PD_THROW(kCorruptData, "unknown dtype \"", info.stored_dtype, "\" for tensor '", name, "' in ", path);
  info.dtype = io::safetensors_dtype(info.stored_dtype);

  const json& shape = e["shape"];
  if (!shape.is_array()) PD_THROW(kCorruptData, "shape of tensor '", name, "' in ", path, " is not an array");
  // Checked products: a hostile shape must not wrap around to a size that happens to match.
  uint64_t bytes = *elem;
  bool overflow = false;
  for (const json& d : shape) {
    const uint64_t n = header_uint(d, "shape", name, path);
    info.shape.push_back(int64_t(n));
    if (n > uint64_t(INT64_MAX) || (n != 0 && bytes > UINT64_MAX / n))
      overflow = true;
    else
      bytes *= n;
  }
  if (overflow) PD_THROW(kCorruptData, "shape ", shape.dump(), " of tensor '", name, "' in ", path, " is too large");

  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2)
    PD_THROW(kCorruptData, "data_offsets of tensor '", name, "' in ", path, " is not a pair [begin, end]");
  info.begin = header_uint(off[0], "data_offsets", name, path);
  info.end = header_uint(off[1], "data_offsets", name, path);
  if (info.begin > info.end)
    PD_THROW(kCorruptData, "data_offsets [", info.begin, ", ", info.end, "] of tensor '", name, "' in ", path,
             " are out of order");
  if (info.end > data_size)
    PD_THROW(kCorruptData, "tensor '", name, "' in ", path, " lies at bytes [", info.begin, ", ", info.end,
             ") but the data section holds only ", data_size, " bytes (file truncated?)");
  if (info.end - info.begin != bytes)
    PD_THROW(kCorruptData, "tensor '", name, "' in ", path, " has ", info.end - info.begin, " bytes but shape ",
             shape_str(info.shape), " of ", info.stored_dtype, " needs ", bytes);
  return info;
}

// Two tensors sharing bytes would alias: writing a converted copy of one would corrupt the other's source,
// and no honest writer produces it.
void check_no_overlap(const std::map<std::string, SafetensorsInfo>& tensors, const std::string& path) {
  std::vector<std::tuple<uint64_t, uint64_t, const std::string*>> ranges;
  for (const auto& [name, info] : tensors)
    if (info.end > info.begin) ranges.emplace_back(info.begin, info.end, &name);
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& [b0, e0, n0] = ranges[i - 1];
    const auto& [b1, e1, n1] = ranges[i];
    if (b1 < e0)
      PD_THROW(kCorruptData, "tensors '", *n0, "' [", b0, ", ", e0, ") and '", *n1, "' [", b1, ", ", e1, ") in ", path,
               " overlap");
  }
}

}  // namespace

struct SafetensorsFile::Impl {
  std::string path;
  std::shared_ptr<Mapping> mapping;
  const char* data = nullptr;  // start of the data section
  std::map<std::string, SafetensorsInfo> tensors;
  std::map<std::string, std::string> metadata;
};

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  impl->mapping = map_file(path);
  const char* base = impl->mapping->data();
  const uint64_t size = impl->mapping->size();
  const uint64_t header_len = read_le64(base);
  if (header_len > size - 8)
    PD_THROW(kCorruptData, "header length ", header_len, " in ", path, " runs past the end of the file (", size,
             " bytes): truncated or not a safetensors file");
  impl->data = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  json header;
  try {
    header = json::parse(base + 8, base + 8 + header_len);
  } catch (const json::exception& e) {
    PD_THROW(kCorruptData, "header of ", path, " is not valid JSON: ", e.what());
  }
  if (!header.is_object()) PD_THROW(kCorruptData, "header of ", path, " is not a JSON object");
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) PD_THROW(kCorruptData, "__metadata__ in ", path, " is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) PD_THROW(kCorruptData, "__metadata__ key '", k, "' in ", path, " is not a string");
        impl->metadata[k] = v.get<std::string>();
      }
      continue;
    }
    impl->tensors.emplace(name, parse_entry(name, entry, data_size, path));
  }
  check_no_overlap(impl->tensors, path);
  SafetensorsFile f;
  f.impl_ = std::move(impl);
  return f;
}

const std::string& SafetensorsFile::path() const { return impl_->path; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(impl_->tensors.size());
  for (const auto& kv : impl_->tensors) out.push_back(kv.first);
  return out;
}

bool SafetensorsFile::contains(const std::string& name) const { return impl_->tensors.count(name) != 0; }

const SafetensorsInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end()) PD_THROW(kNotFound, "no tensor '", name, "' in ", impl_->path);
  return it->second;
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }

Tensor SafetensorsFile::get(const std::string& name) const {
  const SafetensorsInfo& in = info(name);
  if (!in.dtype)
    PD_THROW(kUnimplemented, "unsupported dtype ", in.stored_dtype, " for tensor '", name, "' in ", impl_->path,
             " (paradit reads F32, BF16, F16 and F8_E4M3)");
  const char* p = impl_->data + in.begin;
  const size_t elem = dtype_size(*in.dtype);
  if (reinterpret_cast<uintptr_t>(p) % elem != 0) {
    // Only a writer that skipped the header padding gets here; a misaligned float* is undefined behaviour,
    // so such a tensor is copied instead of viewed.
    Tensor t = Tensor::empty(in.shape, *in.dtype, cpu_allocator());
    std::memcpy(t.data(), p, in.end - in.begin);
    return t;
  }
  // The mapping is read-only; the const_cast only satisfies Tensor's untyped pointer.
  return Tensor::borrow(const_cast<char*>(p), in.shape, *in.dtype, Device::cpu(), impl_->mapping);
}

}  // namespace paradit
