// The counter-based generator behind Backend::fill_random, shared by host and device code.
#pragma once

#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define PD_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PD_HOST_DEVICE inline
#endif

namespace paradit {

PD_HOST_DEVICE uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Element i of Backend::fill_random(seed, stddev).
PD_HOST_DEVICE float random_uniform_value(uint64_t seed, uint64_t i, float stddev) {
  const float u = float(splitmix64(seed + i * 0x9E3779B97F4A7C15ull) >> 40) * (1.0f / 16777216.0f);
  return stddev * 1.7320508075688772f * (2.0f * u - 1.0f);
}

// The fill_random seed of one named weight of a model made with random weights (the text encoders' and the VAE's
// ::random): FNV-1a of the name mixed into the model's seed, so every tensor gets its own stream whatever the order
// of creation (consecutive seeds would give shifted copies of one sequence under fill_random's counter scheme).
inline uint64_t named_tensor_seed(uint64_t seed, std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return splitmix64(seed ^ h);
}

}  // namespace paradit
