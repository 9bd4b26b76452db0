// FlowMatchEulerScheduler: diffusers' schedule with its float32/float64 roundings reproduced step by step.
//
// Every expression below names the numpy/torch expression it mirrors. Two rules of numpy ≥ 2 (NEP 50) decide
// the types: a Python float meeting an f32 array (or np.float32 scalar) is rounded to f32 first and the
// operation runs in f32; two f64 operands stay f64. torch does the same for a Python scalar and an f32 tensor.
#include "paradit/sched/flow_match_euler.h"

#include <cmath>

#include "paradit/core/status.h"

// numpy rounds each product before the following add; a fused multiply-add would round once and break
// bit-equality, so contraction is off for this file whatever the target's default.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace paradit {
namespace {

// Element i of np.linspace(start, stop, num) in float64 (numpy's formula: i·step + start, last = stop).
double linspace_at(double start, double stop, int num, int i) {
  const int div = num - 1;
  const double delta = stop - start;
  if (div <= 0) return double(i) * delta + start;
  if (i == div) return stop;
  const double step = delta / double(div);
  if (step == 0.0) return double(i) / double(div) * delta + start;  // numpy's denormal special case
  return double(i) * step + start;
}

// The ends of the training table built in __init__ (torch f32):
//   sigmas = linspace(1, N, N, f32)[::-1] / N;  if not dynamic: sigmas = shift·σ / (1 + (shift − 1)·σ)
// Only sigmas[0] (t = N) and sigmas[-1] (t = 1) are used later, as Python floats.
float train_sigma(const FlowMatchEulerConfig& c, float t) {
  const float s = t / float(c.num_train_timesteps);
  if (c.use_dynamic_shifting) return s;
  const float sh = float(c.shift), shm1 = float(c.shift - 1.0);
  return sh * s / (1.0f + shm1 * s);
}

// The schedule in T (float for FluxPipeline's f32 path, double for the scheduler's own f64 path):
// time shift, then shift_terminal, as set_timesteps steps 2 and 3.
template <typename T>
void shift_sigmas(const FlowMatchEulerConfig& c, double mu, std::vector<T>& s) {
  if (c.use_dynamic_shifting) {
    // time_shift(mu, 1.0, t): exp(mu) / (exp(mu) + (1/t − 1) ** 1.0)  — ** 1.0 is exact, so left out.
    const T m = c.time_shift_type == TimeShiftType::kExponential ? T(std::exp(mu)) : T(mu);
    for (T& t : s) t = m / (m + (T(1) / t - T(1)));
  } else {
    // shift·σ / (1 + (shift − 1)·σ), with (shift − 1) taken as a Python float first.
    const T sh = T(c.shift), shm1 = T(c.shift - 1.0);
    for (T& t : s) t = sh * t / (T(1) + shm1 * t);
  }
  if (c.shift_terminal) {
    // stretch_shift_to_terminal: 1 − (1 − t) / ((1 − t[-1]) / (1 − shift_terminal)).
    const T scale = (T(1) - s.back()) / T(1.0 - *c.shift_terminal);
    for (T& t : s) t = T(1) - (T(1) - t) / scale;
  }
}

}  // namespace

double calculate_shift(int64_t image_seq_len, int64_t base_seq_len, int64_t max_seq_len, double base_shift,
                       double max_shift) {
  const double m = (max_shift - base_shift) / double(max_seq_len - base_seq_len);
  const double b = base_shift - m * double(base_seq_len);
  return double(image_seq_len) * m + b;
}

FlowMatchEulerScheduler::FlowMatchEulerScheduler(FlowMatchEulerConfig config, SigmaSource source)
    : config_(std::move(config)), source_(source) {}

double FlowMatchEulerScheduler::mu(int64_t image_seq_len) const {
  return calculate_shift(image_seq_len, config_.base_image_seq_len, config_.max_image_seq_len, config_.base_shift,
                         config_.max_shift);
}

void FlowMatchEulerScheduler::set_timesteps(int num_steps, int64_t image_seq_len) {
  PD_REQUIRE(num_steps >= 1, "the number of steps must be at least 1, got ", num_steps);
  PD_REQUIRE(image_seq_len >= 1, "the image token count must be positive, got ", image_seq_len);
  const int S = num_steps;
  const double m = mu(image_seq_len);
  std::vector<float> s32(static_cast<size_t>(S));

  if (source_ == SigmaSource::kFluxPipeline) {
    // sigmas = np.linspace(1.0, 1 / S, S) (f64), then np.array(sigmas).astype(np.float32).
    for (int i = 0; i < S; ++i) s32[size_t(i)] = float(linspace_at(1.0, 1.0 / double(S), S, i));
    shift_sigmas(config_, m, s32);
  } else {
    // timesteps = np.linspace(σ_max·N, σ_min·N, S) over the training table's ends; sigmas = timesteps / N (f64).
    const double n = double(config_.num_train_timesteps);
    const double t_max = double(train_sigma(config_, float(config_.num_train_timesteps))) * n;
    const double t_min = double(train_sigma(config_, 1.0f)) * n;
    std::vector<double> s64(static_cast<size_t>(S));
    for (int i = 0; i < S; ++i) s64[size_t(i)] = linspace_at(t_max, t_min, S, i) / n;
    shift_sigmas(config_, m, s64);
    for (int i = 0; i < S; ++i) s32[size_t(i)] = float(s64[size_t(i)]);  // torch.from_numpy(...).to(float32)
  }

  timesteps_.resize(size_t(S));
  for (int i = 0; i < S; ++i) {
    if (!std::isfinite(s32[size_t(i)]))
      PD_THROW(kInvalidArgument, "scheduler (", config_.summary(), ") gives a non-finite sigma at step ", i,
               " for ", S, " steps and ", image_seq_len, " image tokens (mu ", m, ")");
    timesteps_[size_t(i)] = s32[size_t(i)] * float(config_.num_train_timesteps);  // sigmas * N in torch f32
  }
  sigmas_ = std::move(s32);
  sigmas_.push_back(0.0f);  // terminal sigma
}

float FlowMatchEulerScheduler::sigma(int i) const {
  PD_REQUIRE(i >= 0 && i < int(sigmas_.size()), "sigma index ", i, " out of range [0, ", sigmas_.size(), ")");
  return sigmas_[size_t(i)];
}

float FlowMatchEulerScheduler::timestep(int i) const {
  PD_REQUIRE(i >= 0 && i < num_steps(), "step ", i, " out of range [0, ", num_steps(), ")");
  return timesteps_[size_t(i)];
}

float FlowMatchEulerScheduler::dt(int i) const {
  PD_REQUIRE(i >= 0 && i < num_steps(), "step ", i, " out of range [0, ", num_steps(), ")");
  return sigmas_[size_t(i) + 1] - sigmas_[size_t(i)];
}

void FlowMatchEulerScheduler::step_host(float* x, const float* v, size_t n, int i) const {
  const float d = dt(i);
  for (size_t k = 0; k < n; ++k) {
    const float dv = d * v[k];  // rounded on its own, as torch's `dt * model_output`
    x[k] = x[k] + dv;
  }
}

}  // namespace paradit
