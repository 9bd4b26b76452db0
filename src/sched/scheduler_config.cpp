// FlowMatchEulerConfig: published defaults and scheduler_config.json parsing.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "paradit/core/status.h"
#include "paradit/sched/scheduler_config.h"

namespace paradit {

FlowMatchEulerConfig FlowMatchEulerConfig::flux_dev() {
  FlowMatchEulerConfig c;
  c.shift = 3.0;
  c.use_dynamic_shifting = true;
  return c;
}

FlowMatchEulerConfig FlowMatchEulerConfig::flux_schnell() { return FlowMatchEulerConfig{}; }

FlowMatchEulerConfig FlowMatchEulerConfig::sd3() {
  FlowMatchEulerConfig c;
  c.shift = 3.0;
  return c;
}

std::string FlowMatchEulerConfig::summary() const {
  std::ostringstream os;
  os << "shift " << shift;
  if (use_dynamic_shifting)
    os << ", dynamic " << (time_shift_type == TimeShiftType::kExponential ? "exponential" : "linear") << " ("
       << base_shift << ".." << max_shift << " over " << base_image_seq_len << ".." << max_image_seq_len
       << " tokens)";
  else
    os << ", static";
  if (shift_terminal) os << ", terminal " << *shift_terminal;
  os << ", " << num_train_timesteps << " train timesteps";
  return os.str();
}

namespace {

using nlohmann::json;

double number(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_number()) PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", v.dump(), ", not a number");
  return v.get<double>();
}

int64_t integer(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > (int64_t(1) << 40))
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", v.dump(), ", not a positive integer");
  return v.get<int64_t>();
}

bool boolean(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_boolean()) PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", v.dump(), ", not a boolean");
  return v.get<bool>();
}

// What a new diffusers option looks like when it is off.
bool is_off(const json& v) {
  return v.is_null() || (v.is_boolean() && !v.get<bool>()) || (v.is_number() && v.get<double>() == 0.0);
}

}  // namespace

FlowMatchEulerConfig FlowMatchEulerConfig::parse(const std::string& json_text, const std::string& source) {
  json cfg;
  try {
    cfg = json::parse(json_text);
  } catch (const json::exception& e) {
    PD_THROW(kCorruptData, source, " is not valid JSON: ", e.what());
  }
  if (!cfg.is_object()) PD_THROW(kCorruptData, source, " does not hold a JSON object");

  FlowMatchEulerConfig c;
  // Options whose non-default value changes the schedule in ways not mirrored here.
  static const std::set<std::string> unsupported = {"invert_sigmas", "use_karras_sigmas", "use_exponential_sigmas",
                                                    "use_beta_sigmas", "stochastic_sampling"};
  for (const auto& [key, v] : cfg.items()) {
    if (key == "_class_name") {
      if (!v.is_string() || v.get<std::string>() != "FlowMatchEulerDiscreteScheduler")
        PD_THROW(kUnimplemented, source, " configures ", v.dump(),
                 "; only FlowMatchEulerDiscreteScheduler is implemented");
    } else if (!key.empty() && key[0] == '_') {
      // _diffusers_version, _name_or_path: bookkeeping.
    } else if (key == "num_train_timesteps") {
      c.num_train_timesteps = integer(v, key, source);
    } else if (key == "shift") {
      c.shift = number(v, key, source);
      if (!(c.shift > 0.0)) PD_THROW(kCorruptData, "shift in ", source, " is ", v.dump(), ", not positive");
    } else if (key == "use_dynamic_shifting") {
      c.use_dynamic_shifting = boolean(v, key, source);
    } else if (key == "base_shift" || key == "max_shift") {
      // null is what diffusers' signature allows; it only matters (and then fails) with dynamic shifting.
      if (v.is_null()) continue;
      (key == "base_shift" ? c.base_shift : c.max_shift) = number(v, key, source);
    } else if (key == "base_image_seq_len") {
      c.base_image_seq_len = integer(v, key, source);
    } else if (key == "max_image_seq_len") {
      c.max_image_seq_len = integer(v, key, source);
    } else if (key == "time_shift_type") {
      const std::string s = v.is_string() ? v.get<std::string>() : "";
      if (s == "exponential")
        c.time_shift_type = TimeShiftType::kExponential;
      else if (s == "linear")
        c.time_shift_type = TimeShiftType::kLinear;
      else
        PD_THROW(kCorruptData, "time_shift_type in ", source, " is ", v.dump(), ", not \"exponential\" or \"linear\"");
    } else if (key == "shift_terminal") {
      if (is_off(v)) continue;  // diffusers applies it only when truthy
      const double t = number(v, key, source);
      if (!(t < 1.0)) PD_THROW(kCorruptData, "shift_terminal in ", source, " is ", v.dump(), ", not below 1");
      c.shift_terminal = t;
    } else if (unsupported.count(key)) {
      if (!boolean(v, key, source)) continue;
      PD_THROW(kUnimplemented, source, " sets ", key, " = true, which paradit's FlowMatchEulerScheduler does not "
               "implement (supported: static or dynamic exponential/linear shift, shift_terminal)");
    } else if (!is_off(v)) {
      PD_THROW(kUnimplemented, source, " sets the unknown scheduler option ", key, " = ", v.dump(),
               "; refusing rather than computing a schedule that may differ from diffusers'");
    }
  }
  if (c.use_dynamic_shifting) {
    for (const char* key : {"base_shift", "max_shift"})
      if (cfg.contains(key) && cfg[key].is_null())
        PD_THROW(kCorruptData, source, " uses dynamic shifting but sets ", key, " to null");
    if (c.base_image_seq_len == c.max_image_seq_len)
      PD_THROW(kCorruptData, source, " has base_image_seq_len == max_image_seq_len (", c.base_image_seq_len,
               "): the shift line is undefined");
  }
  return c;
}

FlowMatchEulerConfig FlowMatchEulerConfig::load(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "scheduler" / "scheduler_config.json", ec))
      p = p / "scheduler" / "scheduler_config.json";
    else
      p = p / "scheduler_config.json";
  }
  if (!fs::exists(p, ec)) PD_THROW(kNotFound, "scheduler config ", p.string(), " not found");
  std::ifstream in(p, std::ios::binary);
  if (!in) PD_THROW(kIoError, "cannot read scheduler config ", p.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) PD_THROW(kIoError, "error reading scheduler config ", p.string());
  return parse(text.str(), p.string());
}

}  // namespace paradit
