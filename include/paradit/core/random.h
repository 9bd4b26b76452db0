// The counter-based generator behind Backend::fill_random, shared by host and device code.
#pragma once

#include <cstdint>

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

}  // namespace paradit
