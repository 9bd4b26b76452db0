// Scalar math shared by the elementwise ops, the matmul epilogue and the softmax, written so that the loops
// calling it vectorise: the build targets baseline x86-64 and libm's expf/tanhf do not vectorise without
// -ffast-math. Files whose loops use it declare #pragma GCC optimize("no-trapping-math") first, without
// which GCC keeps the clamps below as branches.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace paradit::cpu {

// e^x within ~1 ulp (Cephes' expf: x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial for e^r, then 2^n built
// in the exponent bits). No branches or selects, so that loops over it vectorise: x is clamped to [−87, 89],
// where n = −126 gives the scale +0 (x ≲ −86.6 returns 0; the true value is below 2e-38) and n = 128
// overflows to +inf past 88.72 as expf does. NaN stays NaN.
inline float exp(float x) {
  const float xc = std::min(std::max(x, -87.0f), 89.0f);
  // Adding 1.5·2²³ rounds to the nearest integer in the low mantissa bits (IEEE arithmetic, no fast-math).
  constexpr float kRound = 12582912.0f;
  const float n = (xc * 1.44269504088896341f + kRound) - kRound;
  float r = xc - n * 0.693359375f;  // ln2 in two parts: the first has few bits, so n·it is exact
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2^n as 2·2^(n−1): n ∈ [−126, 128] puts n + 126 in the exponent field's range [0, 254].
  const uint32_t bits = uint32_t(int32_t(n) + 126) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return (p * 2.0f) * scale;
}

// GELU, tanh approximation: 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³), evaluated as x·σ(2u), which is
// the same function without 1 + tanh(u)'s cancellation for negative u.
inline float gelu_tanh(float x) {
  constexpr float kTwoSqrt2OverPi = 1.5957691216057308f;
  return x / (1.0f + cpu::exp(-kTwoSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

// x·σ(x); a large negative x gives x/inf = −0 rather than NaN.
inline float silu(float x) { return x / (1.0f + cpu::exp(-x)); }

// CLIP's quick_gelu, x·σ(1.702·x); like silu, a large negative x gives −0.
inline float quick_gelu(float x) { return x / (1.0f + cpu::exp(-1.702f * x)); }

// max of n ≥ 1 floats, in eight independent lanes so that it vectorises.
inline float row_max(const float* s, int64_t n) {
  float m[8];
  for (int l = 0; l < 8; ++l) m[l] = s[0];
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) m[l] = std::max(m[l], s[j + l]);
  for (; j < n; ++j) m[0] = std::max(m[0], s[j]);
  return *std::max_element(m, m + 8);
}

// s[j] ← e^(s[j] − mx); returns Σ s[j] accumulated in double (eight partial sums, for throughput).
inline double exp_and_sum(float* s, int64_t n, float mx) {
  for (int64_t j = 0; j < n; ++j) s[j] = cpu::exp(s[j] - mx);
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) acc[l] += double(s[j + l]);
  for (; j < n; ++j) acc[0] += double(s[j]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace paradit::cpu
