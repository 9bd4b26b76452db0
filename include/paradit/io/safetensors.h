// safetensors: memory-mapped reading (one file, or shards behind a *.safetensors.index.json) and writing.
//
// Format: 8-byte little-endian header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets":
// [begin, end]}, "__metadata__": {str: str}}, then the data section (offsets are relative to its start).
// Everything in the header is checked when a file is opened, so a truncated or malformed file is an Error
// naming the file (and the tensor) rather than a crash later. Tensors are handed out as host views of the
// read-only mapping: reading them costs page faults, not copies, and they must not be written to.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "paradit/core/tensor.h"

namespace paradit {

struct SafetensorsInfo {
  std::string stored_dtype;    // as written in the file: "BF16", "F32", "I64", ...
  std::optional<DType> dtype;  // empty when paradit has no such dtype (get() refuses such a tensor)
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

class SafetensorsFile {
 public:
  // Maps and validates the file. Throws Error: kNotFound (no such file), kIoError (cannot read or map),
  // kCorruptData (truncated, malformed header, inconsistent offsets or sizes, unknown dtype).
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const;
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  // Throws kNotFound naming the file and the tensor when it is absent.
  const SafetensorsInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const;
  // A host view of the tensor in its stored dtype; it keeps the mapping alive. Throws kNotFound when absent,
  // kUnimplemented when its dtype is one paradit does not read (F64, I64, ...).
  Tensor get(const std::string& name) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// One logical checkpoint spread over one or more files.
class SafetensorsSet {
 public:
  // path: a .safetensors file; a *.safetensors.index.json (its weight_map names shards relative to the index);
  // or a directory, which uses its *.safetensors.index.json if there is one, else its single .safetensors
  // file. Every shard is opened and checked to hold the tensors the index assigns it. Throws Error naming the
  // path (kNotFound, kCorruptData, kInvalidArgument when a directory is ambiguous).
  static SafetensorsSet open(const std::string& path);

  const std::string& path() const;         // as opened
  std::vector<std::string> names() const;  // sorted, over every shard
  bool contains(const std::string& name) const;
  const SafetensorsInfo& info(const std::string& name) const;
  Tensor get(const std::string& name) const;
  // The file that holds the tensor (for messages). Throws kNotFound when absent.
  const std::string& file_of(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// Writes host tensors (f32, bf16, f16, f8_e4m3; any strides) in the standard layout: the header padded with
// spaces to a multiple of 8 bytes, the data packed without gaps (other readers insist), wider dtypes first so
// that every tensor stays aligned to its element size. The file appears complete or not at all (written
// beside it, then renamed). Throws kInvalidArgument (duplicate or reserved name, device tensor) or kIoError
// naming the path.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace paradit
