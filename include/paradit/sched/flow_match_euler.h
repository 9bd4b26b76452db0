// FlowMatchEulerScheduler: the sigma/timestep schedule of diffusers' FlowMatchEulerDiscreteScheduler, bit for bit.
//
// diffusers computes the schedule partly in float32 (numpy/torch f32 arrays) and partly in float64 (Python
// floats, numpy f64 arrays), and which depends on how the pipeline calls set_timesteps:
//   * FluxPipeline passes sigmas = np.linspace(1, 1/S, S) (f64), which the scheduler casts to f32 at once; the
//     time shift then runs in f32 with e^μ rounded to f32 (numpy's rule for a Python float against an f32 array).
//   * StableDiffusion3Pipeline passes no sigmas: the scheduler spaces S timesteps between the ends of its own
//     (already shifted, f32) training table in f64, shifts again in f64, and casts to f32 at the end.
// Both end with timesteps = f32(σ)·1000 in f32 and a terminal σ = 0. The arithmetic here follows the same
// order, types and roundings, so the result equals diffusers' exactly (tests/scheduler_test.cpp checks every
// step count 1..50 at sizes 256²..2048² against values dumped from diffusers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "paradit/sched/scheduler_config.h"

namespace paradit {

// Which pipeline's call of set_timesteps to mirror (see above).
enum class SigmaSource {
  kFluxPipeline,  // FluxPipeline (all FLUX.1 variants): μ from the image token count, f32 shift
  kScheduler,     // StableDiffusion3Pipeline: the scheduler's own spacing; μ only when use_dynamic_shifting
};

// FluxPipeline's calculate_shift: the line through (base_seq_len, base_shift) and (max_seq_len, max_shift) at
// image_seq_len, in float64, not clamped (2048² extrapolates to μ = 3.23 for FLUX.1-dev).
double calculate_shift(int64_t image_seq_len, int64_t base_seq_len, int64_t max_seq_len, double base_shift,
                       double max_shift);

class FlowMatchEulerScheduler {
 public:
  explicit FlowMatchEulerScheduler(FlowMatchEulerConfig config, SigmaSource source = SigmaSource::kFluxPipeline);

  // Computes the schedule for num_steps (≥ 1) denoising steps of an image of image_seq_len tokens (FLUX: the
  // packed latent grid (H/16)·(W/16); SD3: (H/8/p)·(W/8/p) with patch size p = 2). Throws kInvalidArgument for
  // num_steps < 1 or image_seq_len < 1.
  void set_timesteps(int num_steps, int64_t image_seq_len);

  // μ as the pipeline computes it from this config.
  double mu(int64_t image_seq_len) const;

  int num_steps() const { return int(timesteps_.size()); }
  const std::vector<float>& sigmas() const { return sigmas_; }        // num_steps + 1 values, the last 0
  const std::vector<float>& timesteps() const { return timesteps_; }  // num_steps values, σ_i·1000
  float sigma(int i) const;
  float timestep(int i) const;
  // σ_{i+1} − σ_i in f32 (negative): step i moves x by dt·v.
  float dt(int i) const;
  // Step i on host f32 data: x ← x + dt_i·v, with dt_i·v rounded to f32 before the add (torch's order). With a
  // bf16 model output diffusers rounds dt·v to bf16 instead (the 0-dim f32 dt does not promote the product);
  // a device implementation mirroring a bf16 pipeline must do the same.
  void step_host(float* x, const float* v, size_t n, int i) const;

  const FlowMatchEulerConfig& config() const { return config_; }
  SigmaSource source() const { return source_; }

 private:
  FlowMatchEulerConfig config_;
  SigmaSource source_;
  std::vector<float> sigmas_, timesteps_;
};

}  // namespace paradit
