#include "pipeline/flux_sources.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "paradit/core/status.h"

namespace paradit::flux_pipeline {
namespace {

namespace fs = std::filesystem;

// One component: its model_index.json key (= its folder in a diffusers pipeline) and the single-file flag that
// replaces it.
struct Piece {
  const char* key;
  const char* what;
  const char* flag;
  const char* example;
  std::string FluxPipelineSources::*single;
  std::string ResolvedSources::*path;
  std::string ResolvedSources::*config;  // null for tokenizers (no config.json)
};

const Piece kPieces[] = {
    {"transformer", "the transformer", "--diffusion-model", "flux1-dev.safetensors",
     &FluxPipelineSources::diffusion_model, &ResolvedSources::transformer, &ResolvedSources::transformer_config},
    {"vae", "the VAE", "--vae", "ae.safetensors", &FluxPipelineSources::vae, &ResolvedSources::vae,
     &ResolvedSources::vae_config},
    {"text_encoder", "the CLIP text encoder", "--clip_l", "clip_l.safetensors", &FluxPipelineSources::clip_l,
     &ResolvedSources::clip, &ResolvedSources::clip_config},
    {"text_encoder_2", "the T5 text encoder", "--t5xxl", "t5xxl_fp16.safetensors", &FluxPipelineSources::t5xxl,
     &ResolvedSources::t5, &ResolvedSources::t5_config},
    {"tokenizer", "the CLIP tokenizer", "--clip-tokenizer", "a folder with vocab.json and merges.txt",
     &FluxPipelineSources::clip_tokenizer, &ResolvedSources::clip_tokenizer, nullptr},
    {"tokenizer_2", "the T5 tokenizer", "--t5-tokenizer", "spiece.model or tokenizer.json",
     &FluxPipelineSources::t5_tokenizer, &ResolvedSources::t5_tokenizer, nullptr},
};

nlohmann::json read_model_index(const std::string& dir) {
  PD_REQUIRE(fs::is_directory(dir), "--model ", dir, " is not a folder (expected a diffusers FLUX.1 pipeline)");
  const std::string path = (fs::path(dir) / "model_index.json").string();
  std::ifstream in(path);
  if (!in) PD_THROW(kNotFound, dir, " has no model_index.json: it is not a diffusers pipeline folder");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json index = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!index.is_object()) PD_THROW(kCorruptData, path, " is not a JSON object");
  const auto cls = index.find("_class_name");
  if (cls == index.end() || !cls->is_string()) PD_THROW(kCorruptData, path, " has no \"_class_name\"");
  if (cls->get<std::string>() != "FluxPipeline")
    PD_THROW(kUnimplemented, dir, " holds a ", cls->get<std::string>(), "; only FluxPipeline (FLUX.1) is supported");
  return index;
}

// A model_index.json entry names a component when it is [library, class] with both set (optional components
// absent from the folder are written as [null, null]).
bool names_component(const nlohmann::json& index, const char* key) {
  const auto it = index.find(key);
  return it != index.end() && it->is_array() && it->size() == 2 && (*it)[0].is_string() && (*it)[1].is_string();
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : sep) + i;
  return s;
}

std::string model_name(const FluxPipelineSources& s) {
  if (s.embedded) return "tiny-flux (random weights)";
  if (!s.model_dir.empty()) {
    const fs::path p = fs::path(s.model_dir).lexically_normal();
    return (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
  }
  return fs::path(s.diffusion_model).stem().string();
}

}  // namespace

ResolvedSources resolve_sources(const FluxPipelineSources& s) {
  const bool have_dir = !s.model_dir.empty();
  const nlohmann::json index = have_dir ? read_model_index(s.model_dir) : nlohmann::json();
  ResolvedSources r;
  std::vector<std::string> missing;
  for (const Piece& p : kPieces) {
    const std::string& single = s.*p.single;
    if (!single.empty()) {
      if (!fs::exists(single)) {
        missing.push_back(std::string(p.flag) + ": no such file or folder: " + single);
        continue;
      }
      r.*p.path = single;
      if (p.config && !s.config_dir.empty()) {
        const fs::path cfg = fs::path(s.config_dir) / p.key;
        if (!fs::is_directory(cfg))
          missing.push_back(std::string("the config of ") + p.what + ": no folder " + cfg.string());
        r.*p.config = cfg.string();
      }
    } else if (have_dir) {
      const fs::path folder = fs::path(s.model_dir) / p.key;
      if (!names_component(index, p.key))
        missing.push_back(std::string(p.what) + ": model_index.json names no '" + p.key + "' (or pass " + p.flag +
                          ")");
      else if (!fs::is_directory(folder))
        missing.push_back(std::string(p.what) + ": folder " + folder.string() + " is missing (or pass " + p.flag +
                          ")");
      else
        r.*p.path = folder.string();
    } else {
      missing.push_back(std::string(p.what) + " (" + p.flag + " " + p.example + ")");
    }
  }
  if (have_dir && names_component(index, "scheduler")) {
    const fs::path cfg = fs::path(s.model_dir) / "scheduler" / "scheduler_config.json";
    if (fs::exists(cfg))
      r.scheduler_config = cfg.string();
    else
      missing.push_back("the scheduler config: " + cfg.string() + " is missing");
  }
  if (!missing.empty())
    PD_THROW(kNotFound, "incomplete FLUX.1 pipeline: missing ", join(missing, "; "),
             have_dir ? "" : ". Give --model DIR (a diffusers FLUX.1 folder) or every single file");
  r.model_name = model_name(s);
  return r;
}

}  // namespace paradit::flux_pipeline
