// write_safetensors: host tensors to a .safetensors file that any reader (ours, Python's) accepts.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "io/safetensors_dtype.h"
#include "paradit/core/status.h"
#include "paradit/io/safetensors.h"

namespace paradit {
namespace {

// Copies a strided host tensor into row-major bytes.
std::vector<char> gather(const Tensor& t) {
  const size_t es = t.element_size();
  std::vector<char> out(t.nbytes());
  const int n = t.dim();
  std::vector<int64_t> idx(n, 0);
  const char* base = static_cast<const char*>(t.data());
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t off = 0;
    for (int d = 0; d < n; ++d) off += idx[d] * t.stride(d);
    std::memcpy(out.data() + size_t(i) * es, base + off * int64_t(es), es);
    for (int d = n - 1; d >= 0; --d) {
      if (++idx[d] < t.size(d)) break;
      idx[d] = 0;
    }
  }
  return out;
}

// A FILE that is closed (and its half-written temporary removed) on any exit but a successful commit.
class TempFile {
 public:
  // The name is unique per process and call, so that two threads writing the same path cannot interleave.
  explicit TempFile(std::string final_path)
      : final_(std::move(final_path)),
        tmp_(final_ + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter_++)) {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) PD_THROW(kIoError, "cannot create ", tmp_, " (writing ", final_, "): ", std::strerror(errno));
  }
  ~TempFile() {
    if (f_) {
      std::fclose(f_);
      std::remove(tmp_.c_str());
    }
  }
  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) PD_THROW(kIoError, "cannot write ", final_, ": ", std::strerror(errno));
  }
  void commit() {
    FILE* f = f_;
    f_ = nullptr;
    if (std::fclose(f) != 0) {
      const int err = errno;
      std::remove(tmp_.c_str());
      PD_THROW(kIoError, "cannot write ", final_, ": ", std::strerror(err));
    }
    if (std::rename(tmp_.c_str(), final_.c_str()) != 0) {
      const int err = errno;
      std::remove(tmp_.c_str());
      PD_THROW(kIoError, "cannot rename ", tmp_, " to ", final_, ": ", std::strerror(err));
    }
  }

 private:
  static inline std::atomic<uint64_t> counter_{0};
  std::string final_, tmp_;
  FILE* f_ = nullptr;
};

}  // namespace

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    PD_REQUIRE(!name.empty() && name != "__metadata__", "cannot write a tensor named '", name, "' to ", path);
    PD_REQUIRE(seen.insert(name).second, "tensor '", name, "' given twice for ", path);
    PD_REQUIRE(t.defined(), "tensor '", name, "' for ", path, " is undefined");
    PD_REQUIRE(t.device().is_cpu(), "tensor '", name, "' for ", path, " is on ", t.device().str(),
               "; copy it to the host first");
  }
  // Widest elements first: with the header padded to 8 bytes, every tensor then starts aligned to its size.
  std::vector<const std::pair<std::string, Tensor>*> order;
  for (const auto& kv : tensors) order.push_back(&kv);
  std::stable_sort(order.begin(), order.end(),
                   [](auto* a, auto* b) { return a->second.element_size() > b->second.element_size(); });

  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto* kv : order) {
    const Tensor& t = kv->second;
    header[kv->first] = {{"dtype", io::safetensors_dtype_name(t.dtype())},
                         {"shape", t.shape()},
                         {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  TempFile out(path);
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = char((uint64_t(text.size()) >> (8 * i)) & 0xff);
  out.write(len, 8);
  out.write(text.data(), text.size());
  for (const auto* kv : order) {
    const Tensor& t = kv->second;
    if (t.is_contiguous()) {
      out.write(t.data(), t.nbytes());
    } else {
      const std::vector<char> bytes = gather(t);
      out.write(bytes.data(), bytes.size());
    }
  }
  out.commit();
}

}  // namespace paradit
