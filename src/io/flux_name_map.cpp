#include "io/flux_name_map.h"

#include <map>
#include <utility>

#include "paradit/core/status.h"

namespace paradit::io {
namespace {

struct ModuleMap {
  std::vector<std::string> modules;  // diffusers module paths, in row order
  std::vector<int> rows_in_hidden;
};

// BFL module (relative to its block, or the model for the top level) -> diffusers module(s).
const std::map<std::string, ModuleMap>& double_block_map() {
  static const std::map<std::string, ModuleMap> m = {
      {"img_mod.lin", {{"norm1.linear"}, {}}},
      {"txt_mod.lin", {{"norm1_context.linear"}, {}}},
      {"img_attn.qkv", {{"attn.to_q", "attn.to_k", "attn.to_v"}, {1, 1, 1}}},
      {"txt_attn.qkv", {{"attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"}, {1, 1, 1}}},
      {"img_attn.norm.query_norm", {{"attn.norm_q"}, {}}},
      {"img_attn.norm.key_norm", {{"attn.norm_k"}, {}}},
      {"txt_attn.norm.query_norm", {{"attn.norm_added_q"}, {}}},
      {"txt_attn.norm.key_norm", {{"attn.norm_added_k"}, {}}},
      {"img_attn.proj", {{"attn.to_out.0"}, {}}},
      {"txt_attn.proj", {{"attn.to_add_out"}, {}}},
      {"img_mlp.0", {{"ff.net.0.proj"}, {}}},
      {"img_mlp.2", {{"ff.net.2"}, {}}},
      {"txt_mlp.0", {{"ff_context.net.0.proj"}, {}}},
      {"txt_mlp.2", {{"ff_context.net.2"}, {}}},
  };
  return m;
}

const std::map<std::string, ModuleMap>& single_block_map() {
  static const std::map<std::string, ModuleMap> m = {
      {"linear1", {{"attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"}, {1, 1, 1, 4}}},
      {"linear2", {{"proj_out"}, {}}},
      {"modulation.lin", {{"norm.linear"}, {}}},
      {"norm.query_norm", {{"attn.norm_q"}, {}}},
      {"norm.key_norm", {{"attn.norm_k"}, {}}},
  };
  return m;
}

const std::map<std::string, ModuleMap>& top_level_map() {
  static const std::map<std::string, ModuleMap> m = {
      {"img_in", {{"x_embedder"}, {}}},
      {"txt_in", {{"context_embedder"}, {}}},
      {"time_in.in_layer", {{"time_text_embed.timestep_embedder.linear_1"}, {}}},
      {"time_in.out_layer", {{"time_text_embed.timestep_embedder.linear_2"}, {}}},
      {"guidance_in.in_layer", {{"time_text_embed.guidance_embedder.linear_1"}, {}}},
      {"guidance_in.out_layer", {{"time_text_embed.guidance_embedder.linear_2"}, {}}},
      {"vector_in.in_layer", {{"time_text_embed.text_embedder.linear_1"}, {}}},
      {"vector_in.out_layer", {{"time_text_embed.text_embedder.linear_2"}, {}}},
      {"final_layer.linear", {{"proj_out"}, {}}},
      {"final_layer.adaLN_modulation.1", {{"norm_out.linear"}, {}}},
  };
  return m;
}

// "double_blocks.7.img_attn.qkv" -> ("7", "img_attn.qkv") when it starts with the block prefix.
bool split_block(const std::string& module, const std::string& prefix, std::string* index, std::string* rest) {
  if (module.compare(0, prefix.size(), prefix) != 0) return false;
  const size_t dot = module.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size()) return false;
  *index = module.substr(prefix.size(), dot - prefix.size());
  *rest = module.substr(dot + 1);
  return true;
}

}  // namespace

DiffusersSource diffusers_source(const std::string& internal_name) {
  const size_t dot = internal_name.rfind('.');
  PD_CHECK(dot != std::string::npos, "not an internal FLUX tensor name: ", internal_name);
  const std::string module = internal_name.substr(0, dot), param = internal_name.substr(dot + 1);
  // RMSNorm gains are "scale" in BFL's code and "weight" in diffusers'.
  const std::string dparam = param == "scale" ? "weight" : param;
  PD_CHECK(param == "weight" || param == "bias" || param == "scale",
           "not an internal FLUX tensor name: ", internal_name);

  const std::map<std::string, ModuleMap>* table = &top_level_map();
  std::string key = module, prefix, index, rest;
  if (split_block(module, "double_blocks.", &index, &rest)) {
    table = &double_block_map();
    key = rest;
    prefix = "transformer_blocks." + index + ".";
  } else if (split_block(module, "single_blocks.", &index, &rest)) {
    table = &single_block_map();
    key = rest;
    prefix = "single_transformer_blocks." + index + ".";
  }
  auto it = table->find(key);
  PD_CHECK(it != table->end(), "not an internal FLUX tensor name: ", internal_name);
  DiffusersSource out;
  for (const auto& m : it->second.modules) out.keys.push_back(prefix + m + "." + dparam);
  out.rows_in_hidden = it->second.rows_in_hidden;
  out.swap_halves = module == "final_layer.adaLN_modulation.1";
  return out;
}

}  // namespace paradit::io
