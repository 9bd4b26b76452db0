// Opening a VAE checkpoint (diffusers folder, pipeline root, LDM/BFL or diffusers single file) and reading its
// decoder tensors into the internal layout.
#include "models/vae/vae_checkpoint.h"

#include <filesystem>
#include <set>

#include "paradit/core/dtype.h"
#include "paradit/core/status.h"
#include "paradit/io/config_json.h"

namespace paradit::vae {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDiffusersWeights = "diffusion_pytorch_model.safetensors";


// config_json is a path to a config.json, a folder holding one, or the JSON text itself.
VaeConfig load_config_arg(const std::string& arg, std::string* source) {
  const std::string text = io::config_text_from_arg(arg, source);
  return VaeConfig::from_diffusers_json(text, *source);
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The prefix before "decoder.conv_in.weight", and whether the names are LDM's or diffusers'.
void detect_naming(const SafetensorsSet& set, VaeSource& src) {
  const std::string anchor = "decoder.conv_in.weight";
  bool found = false;
  for (const std::string& name : set.names()) {
    if (!ends_with(name, anchor)) continue;
    const std::string prefix = name.substr(0, name.size() - anchor.size());
    if (prefix.empty() || prefix == "first_stage_model." || prefix == "vae.") {
      src.prefix = prefix;
      found = true;
      break;
    }
  }
  if (!found) PD_THROW(kInvalidArgument, set.path(), " has no tensor 'decoder.conv_in.weight': not a VAE");
  const std::string d = src.prefix + "decoder.";
  if (set.contains(d + "norm_out.weight") || set.contains(d + "mid.block_1.conv1.weight")) {
    src.layout = "ldm";
  } else if (set.contains(d + "conv_norm_out.weight") || set.contains(d + "mid_block.resnets.0.conv1.weight")) {
    src.layout = "diffusers";
  } else {
    PD_THROW(kInvalidArgument, set.path(), ": decoder tensors named neither as diffusers (decoder.conv_norm_out) ",
             "nor as LDM (decoder.norm_out)");
  }
}

const std::string& stored_name_for(const VaeSource& src, const TensorSpec& spec, std::string* storage) {
  if (src.layout == "ldm") return *storage = src.prefix + spec.ldm;
  *storage = src.prefix + spec.diffusers;
  if (!spec.legacy.empty() && !src.set.contains(*storage) && src.set.contains(src.prefix + spec.legacy))
    *storage = src.prefix + spec.legacy;
  return *storage;
}

// Stored decoder tensors that the config does not account for: a deeper or wider file than the config says,
// or post_quant_conv weights with use_post_quant_conv false. Refused rather than ignored, because the decode
// would be silently wrong. Encoder and quant_conv tensors are not the decoder's and are skipped.
void refuse_unknown_tensors(const VaeSource& src, const std::vector<TensorSpec>& specs) {
  std::set<std::string> used;
  std::string storage;
  for (const TensorSpec& spec : specs) used.insert(stored_name_for(src, spec, &storage));
  std::vector<std::string> unknown;
  for (const std::string& name : src.set.names()) {
    if (name.compare(0, src.prefix.size(), src.prefix) != 0) continue;
    const std::string rest = name.substr(src.prefix.size());
    const bool decoder = rest.rfind("decoder.", 0) == 0 || rest.rfind("post_quant_conv.", 0) == 0;
    if (decoder && !used.count(name)) unknown.push_back(name);
  }
  if (unknown.empty()) return;
  std::string list;
  for (size_t i = 0; i < unknown.size() && i < 5; ++i) list += (i ? ", '" : "'") + unknown[i] + "'";
  if (unknown.size() > 5) list += ", ...";
  PD_THROW(kCorruptData, src.set.file_of(unknown[0]), " holds ", unknown.size(), " decoder tensor(s) that a VAE with ",
           src.config.summary(), " (config from ", src.config_source, ") does not have: ", list);
}

}  // namespace

VaeSource open_source(const std::string& path, const std::string& config_json) {
  fs::path p(path);
  std::error_code ec;
  if (!fs::exists(p, ec)) PD_THROW(kNotFound, "VAE checkpoint ", path, " does not exist");
  if (fs::is_directory(p / "vae", ec)) p /= "vae";  // a pipeline root

  VaeSource src;
  fs::path folder_config;
  if (fs::is_directory(p, ec)) {
    // A folder may also hold variants (diffusion_pytorch_model.fp16.safetensors): the plain name wins.
    src.set = SafetensorsSet::open(fs::exists(p / kDiffusersWeights, ec) ? (p / kDiffusersWeights).string()
                                                                          : p.string());
    folder_config = p / "config.json";
  } else {
    src.set = SafetensorsSet::open(p.string());
    folder_config = p.parent_path() / "config.json";  // used for a diffusers-named file only
  }
  detect_naming(src.set, src);

  if (!config_json.empty()) {
    src.config = load_config_arg(config_json, &src.config_source);
  } else if (!folder_config.empty() && fs::exists(folder_config, ec) &&
             (src.layout == "diffusers" || fs::is_directory(p, ec))) {
    src.config_source = folder_config.string();
    src.config = VaeConfig::from_diffusers_json(io::read_text_file(folder_config.string()), src.config_source);
  } else if (src.layout == "ldm") {
    src.config = infer_ldm_config(src.set, src.prefix);
    src.config_source = "inferred from " + src.set.path();
  } else {
    PD_THROW(kNotFound, "no config.json for the diffusers-named VAE weights ", src.set.path(),
             ": pass it as config_json");
  }
  // GroupNorm splits every width into norm_num_groups groups (an inferred config assumes 32).
  for (int w : src.config.block_out_channels)
    PD_REQUIRE(w % src.config.norm_num_groups == 0, p.string(), ": block width ", w,
               " is not a multiple of norm_num_groups ", src.config.norm_num_groups, " (config ",
               src.config_source, "; pass the model's config.json as config_json)");
  refuse_unknown_tensors(src, decoder_tensors(src.config));
  return src;
}

Tensor read_tensor(const VaeSource& src, const TensorSpec& spec) {
  std::string storage;
  const std::string& name = stored_name_for(src, spec, &storage);
  if (!src.set.contains(name))
    PD_THROW(kNotFound, "missing tensor '", name, "' in ", src.set.path(), " (VAE decoder, ", src.layout, " names, ",
             src.config.summary(), ")");
  const std::string& file = src.set.file_of(name);
  const SafetensorsInfo& info = src.set.info(name);
  if (!info.dtype)
    PD_THROW(kUnimplemented, "unsupported dtype ", info.stored_dtype, " for tensor '", name, "' in ", file,
             " (paradit reads F32, BF16, F16 and F8_E4M3)");
  // LDM (and diffusers before 0.14) store the attention projections as 1×1 convolutions.
  Shape as_conv = spec.shape;
  as_conv.insert(as_conv.end(), {1, 1});
  const bool ok = info.shape == spec.shape || (spec.kind == TensorKind::kAttnProj && info.shape == as_conv);
  if (!ok)
    PD_THROW(kCorruptData, "tensor '", name, "' in ", file, " has shape ", shape_str(info.shape), ", expected ",
             shape_str(spec.shape), " for a VAE decoder with ", src.config.summary(), " (config from ",
             src.config_source, ")");

  const Tensor stored = src.set.get(name);
  Tensor flat = Tensor::empty(info.shape, DType::kF32, cpu_allocator());
  convert_host(flat.data(), DType::kF32, stored.data(), stored.dtype(), size_t(stored.numel()));
  switch (spec.kind) {
    case TensorKind::kVector:
      return flat;
    case TensorKind::kConv1x1:
    case TensorKind::kAttnProj:
      return flat.view({spec.shape[0], spec.shape[1]});
    case TensorKind::kConv3x3: {
      // [Cout, Cin, kh, kw] → [Cout, kh, kw, Cin]: NHWC convolution reads Cin contiguously.
      const int64_t co = spec.shape[0], ci = spec.shape[1], kh = spec.shape[2], kw = spec.shape[3];
      Tensor out = Tensor::empty({co, kh, kw, ci}, DType::kF32, cpu_allocator());
      const float* s = flat.data_as<float>();
      float* d = out.data_as<float>();
      for (int64_t o = 0; o < co; ++o)
        for (int64_t i = 0; i < ci; ++i)
          for (int64_t y = 0; y < kh; ++y)
            for (int64_t x = 0; x < kw; ++x) d[((o * kh + y) * kw + x) * ci + i] = s[((o * ci + i) * kh + y) * kw + x];
      return out;
    }
  }
  PD_CHECK(false, "unknown tensor kind for ", name);
  return {};
}

}  // namespace paradit::vae
