// SafetensorsSet: one logical checkpoint over a single file or the shards of a *.safetensors.index.json.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "paradit/core/status.h"
#include "paradit/io/config_json.h"
#include "paradit/io/safetensors.h"

namespace paradit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Picks the one file in dir whose name ends with suffix. Where there are several (a repository with
// variants such as diffusion_pytorch_model.fp16.safetensors), the plain diffusers/transformers name wins.
std::optional<fs::path> pick_one(const fs::path& dir, const std::string& suffix) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file() && ends_with(it->path().filename().string(), suffix)) found.push_back(it->path());
  if (ec) PD_THROW(kIoError, "cannot list directory ", dir.string(), ": ", ec.message());
  if (found.empty()) return std::nullopt;
  if (found.size() == 1) return found[0];
  for (const char* stem : {"diffusion_pytorch_model", "model"})
    for (const auto& p : found)
      if (p.filename().string() == stem + suffix) return p;
  std::sort(found.begin(), found.end());
  std::string list;
  for (const auto& p : found) list += (list.empty() ? "" : ", ") + p.filename().string();
  PD_THROW(kInvalidArgument, "directory ", dir.string(), " holds several *", suffix, " files (", list,
           "); pass the one to use");
}

// The opened files and which of them holds each tensor.
struct Shards {
  std::vector<SafetensorsFile> files;
  std::map<std::string, size_t> where;  // tensor -> index into files
};

void add_whole_file(Shards& impl, const std::string& file) {
  impl.files.push_back(SafetensorsFile::open(file));
  for (const auto& name : impl.files.back().names()) impl.where[name] = impl.files.size() - 1;
}

void add_index(Shards& impl, const fs::path& index_path) {
  const std::string ip = index_path.string();
  json index;
  try {
    index = json::parse(io::read_text_file(index_path.string()));
  } catch (const json::exception& e) {
    PD_THROW(kCorruptData, "index ", ip, " is not valid JSON: ", e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    PD_THROW(kCorruptData, "index ", ip, " has no weight_map object");
  std::map<std::string, size_t> shard_of_file;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string())
      PD_THROW(kCorruptData, "weight_map entry for tensor '", name, "' in ", ip, " is not a file name");
    const std::string rel = shard.get<std::string>();
    auto it = shard_of_file.find(rel);
    if (it == shard_of_file.end()) {
      const fs::path file = index_path.parent_path() / rel;
      if (!fs::exists(file))
        PD_THROW(kNotFound, "shard ", file.string(), " listed in ", ip, " (for tensor '", name, "') does not exist");
      impl.files.push_back(SafetensorsFile::open(file.string()));
      it = shard_of_file.emplace(rel, impl.files.size() - 1).first;
    }
    const SafetensorsFile& f = impl.files[it->second];
    if (!f.contains(name))
      PD_THROW(kCorruptData, "index ", ip, " places tensor '", name, "' in ", f.path(), ", which does not hold it");
    impl.where[name] = it->second;
  }
}

}  // namespace

struct SafetensorsSet::Impl : Shards {
  std::string path;
};

SafetensorsSet SafetensorsSet::open(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (auto index = pick_one(p, ".safetensors.index.json")) {
      add_index(*impl, *index);
    } else if (auto single = pick_one(p, ".safetensors")) {
      add_whole_file(*impl, single->string());
    } else {
      PD_THROW(kNotFound, "directory ", path, " holds no .safetensors file and no *.safetensors.index.json");
    }
  } else if (ends_with(path, ".json")) {
    if (!fs::exists(p, ec)) PD_THROW(kNotFound, "no such file: ", path);
    add_index(*impl, p);
  } else {
    add_whole_file(*impl, path);
  }
  SafetensorsSet s;
  s.impl_ = std::move(impl);
  return s;
}

const std::string& SafetensorsSet::path() const { return impl_->path; }

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  out.reserve(impl_->where.size());
  for (const auto& kv : impl_->where) out.push_back(kv.first);
  return out;
}

bool SafetensorsSet::contains(const std::string& name) const { return impl_->where.count(name) != 0; }

const std::string& SafetensorsSet::file_of(const std::string& name) const {
  auto it = impl_->where.find(name);
  if (it == impl_->where.end()) PD_THROW(kNotFound, "no tensor '", name, "' in ", impl_->path);
  return impl_->files[it->second].path();
}

const SafetensorsInfo& SafetensorsSet::info(const std::string& name) const {
  auto it = impl_->where.find(name);
  if (it == impl_->where.end()) PD_THROW(kNotFound, "no tensor '", name, "' in ", impl_->path);
  return impl_->files[it->second].info(name);
}

Tensor SafetensorsSet::get(const std::string& name) const {
  auto it = impl_->where.find(name);
  if (it == impl_->where.end()) PD_THROW(kNotFound, "no tensor '", name, "' in ", impl_->path);
  return impl_->files[it->second].get(name);
}

const std::vector<SafetensorsFile>& SafetensorsSet::files() const { return impl_->files; }

}  // namespace paradit
