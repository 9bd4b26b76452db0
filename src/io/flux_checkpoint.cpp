// FluxCheckpoint: finds the weights and config, checks every tensor against the config, and serves tensors
// under internal (BFL) names, fusing diffusers' separate q/k/v (and MLP input) on request.
#include "paradit/io/flux_checkpoint.h"

#include <filesystem>
#include <map>
#include <set>

#include "io/flux_layout.h"
#include "io/flux_name_map.h"
#include "paradit/core/allocator.h"
#include "paradit/core/status.h"
#include "paradit/io/config_json.h"

namespace paradit {
namespace {

namespace fs = std::filesystem;

// Rows [row_begin, row_begin + rows) of a stored tensor.
struct Piece {
  std::string key;
  int64_t row_begin = 0, rows = 0;
};

// How to make one internal tensor: a view of one stored tensor, or rows of several gathered into f32.
struct Source {
  Shape shape;
  std::vector<Piece> pieces;
  bool view = false;
};


// config_json is a path to a config.json, a folder holding one, or the JSON text itself.
FluxConfig load_config_arg(const std::string& arg, std::string* source) {
  const std::string text = io::config_text_from_arg(arg, source);
  return FluxConfig::from_diffusers_json(text, *source);
}

// Rows of the stored tensor each piece covers; the stored tensor must hold exactly those rows, with the
// internal tensor's trailing dimensions.
void check_piece(const io::FluxStorage& s, const std::string& internal, const Piece& piece, int64_t stored_rows,
                 const Shape& want_full, const std::string& config_summary) {
  if (!s.set.contains(piece.key))
    PD_THROW(kNotFound, "missing tensor '", piece.key, "' in ", s.path,
             (piece.key == s.prefix + internal ? std::string() : " (part of internal " + internal + ")"));
  const std::string& file = s.set.file_of(piece.key);
  const SafetensorsInfo& info = s.set.info(piece.key);
  if (!info.dtype)
    PD_THROW(kUnimplemented, "unsupported dtype ", info.stored_dtype, " for tensor '", piece.key, "' in ", file,
             " (paradit reads F32, BF16, F16 and F8_E4M3)");
  Shape want = want_full;
  want[0] = stored_rows;
  if (info.shape != want)
    PD_THROW(kCorruptData, "tensor '", piece.key, "' in ", file, " has shape ", shape_str(info.shape), ", expected ",
             shape_str(want), " for a FLUX.1 transformer with ", config_summary);
}

// The pieces that make `internal` (of shape `shape`) in this storage, each checked.
Source make_source(const io::FluxStorage& s, const std::string& internal, const Shape& shape, const FluxConfig& c) {
  Source src;
  src.shape = shape;
  const std::string summary = c.summary();
  if (!s.diffusers) {
    src.pieces.push_back({s.prefix + internal, 0, shape[0]});
    src.view = true;
    check_piece(s, internal, src.pieces[0], shape[0], shape, summary);
    return src;
  }
  const io::DiffusersSource ds = io::diffusers_source(internal);
  if (ds.swap_halves) {
    const int64_t half = shape[0] / 2;
    const std::string key = s.prefix + ds.keys[0];
    src.pieces = {{key, half, half}, {key, 0, half}};
    check_piece(s, internal, src.pieces[0], shape[0], shape, summary);
    return src;
  }
  if (ds.keys.size() == 1) {
    src.pieces.push_back({s.prefix + ds.keys[0], 0, shape[0]});
    src.view = true;
    check_piece(s, internal, src.pieces[0], shape[0], shape, summary);
    return src;
  }
  for (size_t i = 0; i < ds.keys.size(); ++i) {
    const int64_t rows = int64_t(ds.rows_in_hidden[i]) * c.hidden();
    src.pieces.push_back({s.prefix + ds.keys[i], 0, rows});
    check_piece(s, internal, src.pieces.back(), rows, shape, summary);
  }
  return src;
}

// Tensors under the model's prefix that no internal tensor uses. They are refused rather than ignored: an
// unknown key usually means a variant (fp8 scale factors, extra embedders) whose math we would get wrong.
void refuse_unknown_keys(const io::FluxStorage& s, const std::map<std::string, Source>& sources, const FluxConfig& c) {
  std::set<std::string> used;
  for (const auto& [name, src] : sources)
    for (const auto& p : src.pieces) used.insert(p.key);
  std::vector<std::string> unknown;
  for (const auto& key : s.set.names())
    if (key.compare(0, s.prefix.size(), s.prefix) == 0 && !used.count(key)) unknown.push_back(key);
  if (unknown.empty()) return;
  std::string list;
  for (size_t i = 0; i < unknown.size() && i < 5; ++i) list += (i ? ", '" : "'") + unknown[i] + "'";
  if (unknown.size() > 5) list += ", ...";
  PD_THROW(kCorruptData, s.path, " holds ", unknown.size(), " tensor(s) that a FLUX.1 transformer with ", c.summary(),
           " does not have: ", list, " (in ", s.set.file_of(unknown[0]), ")");
}

}  // namespace

struct FluxCheckpoint::Impl {
  io::FluxStorage storage;
  FluxConfig config;
  std::string layout;
  std::map<std::string, Source> sources;
};

FluxCheckpoint FluxCheckpoint::open(const std::string& path, const std::string& config_json) {
  std::error_code ec;
  fs::path weights(path);
  if (!fs::exists(weights, ec)) PD_THROW(kNotFound, "no such file or directory: ", path);
  // A pipeline root (model_index.json, text_encoder/, vae/, ...) holds the transformer in transformer/.
  if (fs::is_directory(weights / "transformer", ec)) weights /= "transformer";
  // The folder's config.json belongs to the weights only for a diffusers folder (or its index), never for a
  // loose .safetensors file that merely sits beside some config.
  fs::path folder_config;
  if (fs::is_directory(weights, ec))
    folder_config = weights / "config.json";
  else if (weights.string().ends_with(".index.json"))
    folder_config = weights.parent_path() / "config.json";

  auto impl = std::make_shared<Impl>();
  impl->storage = io::detect_flux_storage(SafetensorsSet::open(weights.string()), weights.string());
  const io::FluxStorage& s = impl->storage;
  impl->layout = s.layout();
  io::refuse_unsupported_variants(s);

  const io::InferredFluxConfig inferred = io::infer_flux_config(s);
  std::string given_source;
  std::optional<FluxConfig> given;
  if (!config_json.empty()) {
    given = load_config_arg(config_json, &given_source);
  } else if (!folder_config.empty() && fs::exists(folder_config, ec)) {
    given_source = folder_config.string();
    given = FluxConfig::from_diffusers_json(io::read_text_file(folder_config.string()), given_source);
  }
  if (given) {
    io::check_config_matches(*given, given_source, inferred.config, s.path);
    impl->config = *given;
  } else {
    if (!inferred.axes_known)
      PD_THROW(kInvalidArgument, s.path, " has attention head dim ", inferred.config.attention_head_dim,
               "; its RoPE axes (axes_dims_rope) cannot be inferred from the tensors (only head dim 128 implies [16, "
               "56, 56]): pass the model's diffusers config.json as config_json");
    impl->config = inferred.config;
  }

  for (const auto& [name, shape] : impl->config.tensor_shapes())
    impl->sources.emplace(name, make_source(s, name, shape, impl->config));
  refuse_unknown_keys(s, impl->sources, impl->config);

  FluxCheckpoint ck;
  ck.impl_ = std::move(impl);
  return ck;
}

const FluxConfig& FluxCheckpoint::config() const { return impl_->config; }
const std::string& FluxCheckpoint::layout() const { return impl_->layout; }
const std::string& FluxCheckpoint::source() const { return impl_->storage.path; }

Tensor FluxCheckpoint::get(const std::string& internal_name) const {
  auto it = impl_->sources.find(internal_name);
  if (it == impl_->sources.end())
    PD_THROW(kNotFound, "no tensor '", internal_name, "' in a FLUX.1 transformer with ", impl_->config.summary(),
             " (checkpoint ", impl_->storage.path, ")");
  const Source& src = it->second;
  const SafetensorsSet& set = impl_->storage.set;
  if (src.view) {
    Tensor t = set.get(src.pieces[0].key);
    PD_CHECK(t.shape() == src.shape, "shape of ", src.pieces[0].key, " changed after open");
    return t;
  }
  Tensor out = Tensor::empty(src.shape, DType::kF32, cpu_allocator());
  const int64_t row = src.shape.size() > 1 ? shape_numel(Shape(src.shape.begin() + 1, src.shape.end())) : 1;
  float* dst = out.data_as<float>();
  for (const Piece& p : src.pieces) {
    const Tensor stored = set.get(p.key);
    const char* from = static_cast<const char*>(stored.data()) + p.row_begin * row * int64_t(stored.element_size());
    convert_host(dst, DType::kF32, from, stored.dtype(), size_t(p.rows * row));
    dst += p.rows * row;
  }
  PD_CHECK(dst == out.data_as<float>() + out.numel(), "pieces of ", internal_name, " do not fill it");
  return out;
}

}  // namespace paradit
