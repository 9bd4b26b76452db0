#include "models/clip/encoder_files.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "paradit/core/random.h"
#include "paradit/core/status.h"
#include "paradit/io/config_json.h"

namespace paradit::text_encoder {
namespace {

namespace fs = std::filesystem;


bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The prefix in front of `marker` when `key` is the marker under a whole-component prefix ("" or "a.b.").
std::optional<std::string> prefix_of(const std::string& key, const std::string& marker) {
  if (!ends_with(key, marker)) return std::nullopt;
  std::string prefix = key.substr(0, key.size() - marker.size());
  if (!prefix.empty() && prefix.back() != '.') return std::nullopt;  // "decoder." is not "...encoder."
  return prefix;
}

// The model's prefix in the set: exactly one marker key must be found.
std::string find_prefix(const SafetensorsSet& set, const std::string& path, const EncoderKind& kind) {
  std::vector<std::string> found;
  for (const auto& key : set.names())
    if (auto p = prefix_of(key, kind.marker)) found.push_back(*p);
  if (found.empty())
    PD_THROW(kCorruptData, path, " holds no ", kind.what, " (no tensor named '", kind.marker, "' under any prefix)");
  if (found.size() > 1) {
    std::string list;
    for (const auto& p : found) list += (list.empty() ? "'" : ", '") + p + "'";
    PD_THROW(kCorruptData, path, " holds ", found.size(), " ", kind.what, "s (key prefixes ", list,
             "); pass a file with one");
  }
  return found[0];
}

// config_json is a path to a config.json, a folder holding one, or the JSON text itself.
void read_config_arg(const std::string& arg, EncoderFiles& files) {
  const size_t first = arg.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && arg[first] == '{') {
    files.config_text = arg;
    files.config_source = "the given config JSON";
    return;
  }
  fs::path p(arg);
  std::error_code ec;
  if (fs::is_directory(p, ec)) p /= "config.json";
  if (!fs::exists(p, ec)) PD_THROW(kNotFound, "config file ", p.string(), " does not exist");
  files.config_text = io::read_text_file(p.string());
  files.config_source = p.string();
}

// In a pipeline root, the first listed subfolder whose config.json describes this kind of model.
std::optional<fs::path> pipeline_subfolder(const fs::path& root, const EncoderKind& kind) {
  std::error_code ec;
  for (const auto& sub : kind.subfolders) {
    const fs::path cfg = root / sub / "config.json";
    if (fs::exists(cfg, ec) && kind.accepts_config(io::read_text_file(cfg.string()))) return root / sub;
  }
  return std::nullopt;
}

}  // namespace

Tensor EncoderFiles::get(const std::string& name, const Shape& want, const std::string& model) const {
  const std::string key = prefix + name;
  if (!set.contains(key)) PD_THROW(kNotFound, "missing tensor '", key, "' in ", path, " (", model, ")");
  const std::string& file = set.file_of(key);
  const SafetensorsInfo& info = set.info(key);
  if (!info.dtype)
    PD_THROW(kUnimplemented, "unsupported dtype ", info.stored_dtype, " for tensor '", key, "' in ", file,
             " (paradit reads F32, BF16, F16 and F8_E4M3)");
  if (info.shape != want)
    PD_THROW(kCorruptData, "tensor '", key, "' in ", file, " has shape ", shape_str(info.shape), ", expected ",
             shape_str(want), " for a ", model);
  return set.get(key);
}

Shape EncoderFiles::shape(const std::string& name) const {
  const std::string key = prefix + name;
  if (!set.contains(key)) PD_THROW(kNotFound, "missing tensor '", key, "' in ", path);
  return set.info(key).shape;
}

int EncoderFiles::count_blocks(const std::string& block_prefix) const {
  const std::string p = prefix + block_prefix;
  int n = 0;
  for (const auto& key : set.names()) {
    if (key.compare(0, p.size(), p) != 0) continue;
    const size_t dot = key.find('.', p.size());
    if (dot == std::string::npos) continue;
    const std::string idx = key.substr(p.size(), dot - p.size());
    if (idx.empty() || idx.size() > 6 || !std::all_of(idx.begin(), idx.end(), ::isdigit)) continue;
    n = std::max(n, std::atoi(idx.c_str()) + 1);
  }
  return n;
}

EncoderFiles open_encoder_files(const std::string& path, const std::string& config_json, const EncoderKind& kind) {
  std::error_code ec;
  fs::path weights(path);
  if (!fs::exists(weights, ec)) PD_THROW(kNotFound, "no such file or directory: ", path);
  // A folder's config.json belongs to the weights only for a transformers folder (or its index), never to a loose
  // .safetensors file that merely sits beside some config.
  fs::path folder_config;
  if (fs::is_directory(weights, ec)) {
    if (!fs::exists(weights / "config.json", ec)) {
      if (auto sub = pipeline_subfolder(weights, kind)) weights = *sub;
    }
    folder_config = weights / "config.json";
  } else if (weights.string().ends_with(".index.json")) {
    folder_config = weights.parent_path() / "config.json";
  }

  EncoderFiles files{SafetensorsSet::open(weights.string()), weights.string(), "", std::nullopt, ""};
  files.prefix = find_prefix(files.set, files.path, kind);
  if (!config_json.empty()) {
    read_config_arg(config_json, files);
  } else if (!folder_config.empty() && fs::exists(folder_config, ec)) {
    files.config_text = io::read_text_file(folder_config.string());
    files.config_source = folder_config.string();
  }
  return files;
}

void refuse_unknown(const EncoderFiles& files, const std::string& ns, const std::vector<std::string>& expected,
                    const std::vector<std::string>& ignored, const std::string& model) {
  const std::set<std::string> known(expected.begin(), expected.end());
  const std::set<std::string> skip(ignored.begin(), ignored.end());
  const std::string p = files.prefix + ns;
  std::vector<std::string> unknown;
  for (const auto& key : files.set.names()) {
    if (key.compare(0, p.size(), p) != 0) continue;
    const std::string name = key.substr(files.prefix.size());
    if (!known.count(name) && !skip.count(name)) unknown.push_back(key);
  }
  if (unknown.empty()) return;
  std::string list;
  for (size_t i = 0; i < unknown.size() && i < 5; ++i) list += (i ? ", '" : "'") + unknown[i] + "'";
  if (unknown.size() > 5) list += ", ...";
  PD_THROW(kCorruptData, files.path, " holds ", unknown.size(), " tensor(s) that a ", model, " does not have: ", list,
           " (in ", files.set.file_of(unknown[0]), ")");
}

Tensor upload_rows(Backend& backend, const std::vector<Tensor>& parts) {
  PD_CHECK(!parts.empty() && parts[0].dim() >= 1, "upload_rows needs parts of rank >= 1");
  Shape shape = parts[0].shape();
  shape[0] = 0;
  for (const Tensor& t : parts) {
    PD_CHECK(t.dim() == parts[0].dim() && std::equal(t.shape().begin() + 1, t.shape().end(), shape.begin() + 1),
             "upload_rows: ", t.desc(), " does not stack on ", parts[0].desc());
    shape[0] += t.size(0);
  }
  Tensor out = backend.empty(shape);
  int64_t at = 0;
  for (const Tensor& t : parts) {
    backend.copy(out.slice(0, at, t.size(0)), t);
    at += t.size(0);
  }
  return out;
}

Tensor random_weight(Backend& backend, uint64_t seed, const std::string& name, const Shape& shape) {
  PD_CHECK(!shape.empty(), "random_weight: ", name, " has no dimensions");
  Tensor t = backend.empty(shape);
  const uint64_t s = named_tensor_seed(seed, name);
  if (shape.size() >= 2) {
    backend.fill_random(t, s, float(1.0 / std::sqrt(double(shape.back()))));
  } else if (ends_with(name, ".bias")) {
    backend.fill_random(t, s, 0.01f);
  } else {
    Tensor ones = backend.empty(shape);
    backend.fill(ones, 1.0f);
    backend.fill_random(t, s, 0.02f);
    backend.add(t, t, ones);
  }
  return t;
}

}  // namespace paradit::text_encoder
