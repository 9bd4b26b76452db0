#include "io/flux_layout.h"

#include <algorithm>
#include <cstdlib>

#include "io/flux_name_map.h"
#include "paradit/core/status.h"

namespace paradit::io {
namespace {

// A key present in every FLUX.1 transformer of each naming (the one diffusers' single-file loader tests).
constexpr const char* kBflMarker = "double_blocks.0.img_attn.norm.key_norm.scale";
constexpr const char* kDiffusersMarker = "transformer_blocks.0.attn.norm_k.weight";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The prefix in front of `marker` when `key` is marker under a whole-component prefix ("" or "a.b.").
std::optional<std::string> prefix_of(const std::string& key, const std::string& marker) {
  if (!ends_with(key, marker)) return std::nullopt;
  std::string prefix = key.substr(0, key.size() - marker.size());
  if (!prefix.empty() && prefix.back() != '.') return std::nullopt;  // "single_transformer_blocks..." is not it
  return prefix;
}

// One more than the largest block index under `block_prefix` ("double_blocks."), 0 when there is none.
int count_blocks(const FluxStorage& s, const std::string& block_prefix) {
  const std::string p = s.prefix + block_prefix;
  int n = 0;
  for (const auto& key : s.set.names()) {
    if (key.compare(0, p.size(), p) != 0) continue;
    const size_t dot = key.find('.', p.size());
    const std::string idx = key.substr(p.size(), dot == std::string::npos ? std::string::npos : dot - p.size());
    if (idx.empty() || idx.size() > 6 || !std::all_of(idx.begin(), idx.end(), ::isdigit)) continue;
    n = std::max(n, std::atoi(idx.c_str()) + 1);
  }
  return n;
}

int64_t dim_of(const FluxStorage& s, const std::string& internal, size_t rank, size_t d) {
  const Shape shape = s.stored_shape(internal);
  if (shape.size() != rank || shape[d] <= 0 || shape[d] > (int64_t(1) << 30))
    PD_THROW(kCorruptData, "tensor '", s.stored_key(internal), "' in ", s.set.file_of(s.stored_key(internal)),
             " has shape ", shape_str(shape), "; a FLUX transformer has a ", rank, "-d tensor there");
  return shape[d];
}

}  // namespace

std::string FluxStorage::stored_key(const std::string& internal_name) const {
  if (!diffusers) return prefix + internal_name;
  const DiffusersSource src = diffusers_source(internal_name);
  PD_CHECK(src.keys.size() == 1, internal_name, " is fused from several diffusers tensors");
  return prefix + src.keys[0];
}

Shape FluxStorage::stored_shape(const std::string& internal_name) const {
  const std::string key = stored_key(internal_name);
  if (!set.contains(key)) PD_THROW(kNotFound, "missing tensor '", key, "' in ", path, " (", layout(), " naming)");
  return set.info(key).shape;
}

FluxStorage detect_flux_storage(SafetensorsSet set, const std::string& path) {
  std::optional<std::string> bfl, dif;
  for (const auto& key : set.names()) {
    for (auto [marker, found] : {std::pair{kBflMarker, &bfl}, std::pair{kDiffusersMarker, &dif}}) {
      auto p = prefix_of(key, marker);
      if (!p) continue;
      if (*found && **found != *p)
        PD_THROW(kCorruptData, path, " holds two FLUX transformers (keys under '", **found, "' and '", *p,
                 "'); pass a file with one");
      *found = p;
    }
  }
  if (bfl && dif)
    PD_THROW(kCorruptData, path, " mixes BFL keys (", *bfl, kBflMarker, ") and diffusers keys (", *dif,
             kDiffusersMarker, "); it is not one FLUX transformer");
  if (!bfl && !dif)
    PD_THROW(kCorruptData, "not a FLUX transformer: no key ", kBflMarker, " or ", kDiffusersMarker, " in ", path);
  FluxStorage s{std::move(set), path, bool(dif), dif ? *dif : *bfl};
  return s;
}

void refuse_unsupported_variants(const FluxStorage& s) {
  const Shape in = s.stored_shape("img_in.weight");
  if (in.size() != 2) return;  // the shape check reports it
  // Fill concatenates latents, the masked image and the mask (64 + 64 + 256); Depth/Canny the latents and
  // the control image's latents (64 + 64). Both then need inputs the text-to-image pipeline lacks.
  const char* variant = in[1] == 384 ? "Fill" : in[1] == 128 ? "Depth/Canny" : nullptr;
  if (variant)
    PD_THROW(kUnimplemented, s.path, " is a FLUX.1 ", variant, " checkpoint (tensor '", s.stored_key("img_in.weight"),
             "' takes ", in[1], " input channels); only text-to-image FLUX.1 (64 channels) is supported for now");
}

InferredFluxConfig infer_flux_config(const FluxStorage& s) {
  FluxConfig c;
  const int64_t d = dim_of(s, "img_in.weight", 2, 0);
  c.in_channels = int(dim_of(s, "img_in.weight", 2, 1));
  c.out_channels = int(dim_of(s, "final_layer.linear.weight", 2, 0));
  c.attention_head_dim = int(dim_of(s, "double_blocks.0.img_attn.norm.key_norm.scale", 1, 0));
  if (d % c.attention_head_dim != 0)
    PD_THROW(kCorruptData, "tensor '", s.stored_key("img_in.weight"), "' in ", s.path, " is ", d,
             " wide, not a multiple of the head dim ", c.attention_head_dim, " (from '",
             s.stored_key("double_blocks.0.img_attn.norm.key_norm.scale"), "')");
  c.num_attention_heads = int(d / c.attention_head_dim);
  c.joint_attention_dim = int(dim_of(s, "txt_in.weight", 2, 1));
  c.pooled_projection_dim = int(dim_of(s, "vector_in.in_layer.weight", 2, 1));
  c.guidance_embeds = s.set.contains(s.stored_key("guidance_in.in_layer.weight"));
  c.num_layers = count_blocks(s, s.diffusers ? "transformer_blocks." : "double_blocks.");
  c.num_single_layers = count_blocks(s, s.diffusers ? "single_transformer_blocks." : "single_blocks.");
  InferredFluxConfig out{c, c.attention_head_dim == 128};
  if (!out.axes_known) out.config.axes_dims_rope = {0, 0, 0};
  return out;
}

void check_config_matches(const FluxConfig& given, const std::string& given_source, const FluxConfig& inferred,
                          const std::string& path) {
  auto check = [&](const char* key, int want, int have, const char* what) {
    if (want != have)
      PD_THROW(kInvalidArgument, given_source, " says ", key, " ", want, " but ", path, " holds ", have, " ", what);
  };
  check("in_channels", given.in_channels, inferred.in_channels, "(img_in width)");
  check("out_channels", given.out_channels, inferred.out_channels, "(final_layer.linear rows)");
  check("num_layers", given.num_layers, inferred.num_layers, "double blocks");
  check("num_single_layers", given.num_single_layers, inferred.num_single_layers, "single blocks");
  check("attention_head_dim", given.attention_head_dim, inferred.attention_head_dim, "(query/key norm width)");
  check("num_attention_heads", given.num_attention_heads, inferred.num_attention_heads, "(hidden / head dim)");
  check("joint_attention_dim", given.joint_attention_dim, inferred.joint_attention_dim, "(txt_in width)");
  check("pooled_projection_dim", given.pooled_projection_dim, inferred.pooled_projection_dim, "(vector_in width)");
  if (given.guidance_embeds != inferred.guidance_embeds)
    PD_THROW(kInvalidArgument, given_source, " says guidance_embeds ", given.guidance_embeds ? "true" : "false",
             " but ", path, (inferred.guidance_embeds ? " has" : " has no"),
             " guidance embedding (guidance_in); dev has one, schnell does not");
}

}  // namespace paradit::io
