// FlowMatchEulerConfig: diffusers' FlowMatchEulerDiscreteScheduler configuration (scheduler_config.json).
//
// Only the options FLUX.1-dev/schnell and SD3/SD3.5 use (and the cheap exact ones around them: linear time
// shift, shift_terminal) are supported; a config that turns on anything else (Karras/exponential/beta sigmas,
// invert_sigmas, stochastic sampling) is refused with kUnimplemented naming the key, rather than silently giving
// a schedule that differs from diffusers'.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace paradit {

enum class TimeShiftType { kExponential, kLinear };

struct FlowMatchEulerConfig {
  int64_t num_train_timesteps = 1000;
  double shift = 1.0;
  bool use_dynamic_shifting = false;
  double base_shift = 0.5;
  double max_shift = 1.15;
  int64_t base_image_seq_len = 256;
  int64_t max_image_seq_len = 4096;
  TimeShiftType time_shift_type = TimeShiftType::kExponential;
  std::optional<double> shift_terminal;  // null or 0 in the JSON: off (diffusers tests it for truthiness)

  // The published scheduler_config.json of each model (used when a folder has none).
  static FlowMatchEulerConfig flux_dev();      // shift 3.0, dynamic, base 0.5 / max 1.15 over 256..4096 tokens
  static FlowMatchEulerConfig flux_schnell();  // shift 1.0, static: the plain linspace
  static FlowMatchEulerConfig sd3();           // shift 3.0, static (SD3-medium, SD3.5-large/medium)

  // Parses the JSON text of a scheduler_config.json; `source` names it in errors. Keys diffusers writes with
  // their default ("invert_sigmas": false, ...) are accepted; unknown keys are accepted only when false, null or
  // 0 (how new diffusers options default to off). Throws kCorruptData (malformed, wrong type or range),
  // kUnimplemented (another scheduler class, or an option this engine does not implement).
  static FlowMatchEulerConfig parse(const std::string& json_text, const std::string& source);
  // path: a scheduler_config.json, a scheduler/ folder, or a diffusers pipeline folder (uses
  // scheduler/scheduler_config.json). Throws kNotFound naming the file when it is absent.
  static FlowMatchEulerConfig load(const std::string& path);

  std::string summary() const;  // "shift 3, dynamic exponential (0.5..1.15 over 256..4096 tokens)"
};

}  // namespace paradit
