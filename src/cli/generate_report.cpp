#include "cli/generate_report.h"

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

namespace paradit::cli {

std::vector<std::string> numbered_outputs(const std::string& output, int count) {
  if (count == 1) return {output};
  const std::filesystem::path p(output);
  const int digits = int(std::to_string(count).size());
  std::vector<std::string> paths;
  for (int i = 1; i <= count; ++i) {
    std::string n = std::to_string(i);
    n.insert(0, size_t(digits) - n.size(), '0');
    paths.push_back((p.parent_path() / (p.stem().string() + "_" + n + p.extension().string())).string());
  }
  return paths;
}

std::string png_parameters(const GenerateReport& r, int index) {
  const FluxRequest& q = r.request;
  std::ostringstream os;
  os << q.prompt << "\n";
  if (q.negative_prompt) os << "Negative prompt: " << *q.negative_prompt << "\n";
  os << "Steps: " << r.result->steps << ", Sampler: Euler, Schedule type: FlowMatch, CFG scale: "
     << (q.negative_prompt ? q.true_cfg_scale : 1.0f);
  if (r.variant == "dev") os << ", Guidance: " << q.guidance;
  if (r.init_latents.empty())
    os << ", Seed: " << r.result->seeds[size_t(index)];
  else
    os << ", Init latents: " << r.init_latents << " #" << index;
  os << ", Size: " << q.width << "x" << q.height << ", Model: " << r.model
     << ", Max sequence length: " << r.result->max_sequence_length << ", Version: paradit";
  return os.str();
}

std::string json_summary(const GenerateReport& r) {
  const FluxRequest& q = r.request;
  const FluxResult& res = *r.result;
  nlohmann::json j;
  j["model"] = r.model;
  j["variant"] = r.variant;
  j["device"] = r.device;
  j["dtype"] = r.dtype;
  j["prompt"] = q.prompt;
  j["negative_prompt"] = q.negative_prompt ? nlohmann::json(*q.negative_prompt) : nlohmann::json();
  j["cfg_scale"] = q.negative_prompt ? q.true_cfg_scale : 1.0f;
  j["guidance"] = r.variant == "dev" ? nlohmann::json(q.guidance) : nlohmann::json();
  j["steps"] = res.steps;
  j["width"] = q.width;
  j["height"] = q.height;
  j["max_sequence_length"] = res.max_sequence_length;
  j["seed"] = q.seed;
  j["seeds"] = res.seeds;
  j["init_latents"] = r.init_latents.empty() ? nlohmann::json() : nlohmann::json(r.init_latents);
  j["outputs"] = r.outputs;
  j["warnings"] = res.warnings;
  j["exact"] = r.approximate.empty();
  j["approximate"] = r.approximate.empty() ? nlohmann::json() : nlohmann::json(r.approximate);
  j["timings"] = {{"load_s", r.load_s},           {"encode_s", res.timings.encode_s},
                  {"denoise_s", res.timings.denoise_s}, {"decode_s", res.timings.decode_s},
                  {"write_s", r.write_s},         {"total_s", r.total_s},
                  {"step_s", res.timings.step_s}};
  nlohmann::json memory = nlohmann::json::array();
  for (size_t rank = 0; rank < r.memory.size(); ++rank) {
    const RankMemory& m = r.memory[rank];
    memory.push_back({{"rank", rank},
                      {"transformer_weight_bytes", m.transformer_weight_bytes},
                      {"weight_bytes", m.weight_bytes},
                      {"peak_bytes", m.peak_bytes ? nlohmann::json(*m.peak_bytes) : nlohmann::json()}});
  }
  j["memory"] = memory;
  return j.dump();
}

}  // namespace paradit::cli
