// T5's relative position bias on the host, exactly as transformers' T5Attention.compute_bias makes it.
#include <algorithm>
#include <cmath>

#include "models/t5/t5_internal.h"
#include "paradit/core/allocator.h"
#include "paradit/core/status.h"

namespace paradit::t5 {

int relative_position_bucket(int64_t relative_position, int num_buckets, int max_distance) {
  // Bidirectional: the upper half of the buckets is for keys after the query.
  const int half = num_buckets / 2;
  const int base = relative_position > 0 ? half : 0;
  const int64_t n = relative_position < 0 ? -relative_position : relative_position;
  const int max_exact = half / 2;
  if (n < max_exact) return base + int(n);
  // torch: max_exact + (log(n.float() / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)).long(),
  // every step in float32 (the Python float divisor is rounded to float32 as a tensor-scalar operand); truncation
  // toward zero. The same steps here put the positions on a bucket's edge (16, 32, 64 … for 32/128) on torch's side.
  const float divisor = float(std::log(double(max_distance) / double(max_exact)));
  float v = std::log(float(n) / float(max_exact));
  v = v / divisor;
  v = v * float(half - max_exact);
  const int64_t large = max_exact + int64_t(v);
  return base + int(std::min<int64_t>(large, half - 1));
}

Tensor position_bias(const Tensor& table, int64_t S, int num_buckets, int max_distance) {
  PD_CHECK(table.dim() == 2 && table.size(0) == num_buckets && table.device().is_cpu(), "bias table ", table.desc());
  PD_REQUIRE(S > 0, "T5 position bias needs a positive sequence length, got ", S);
  const int64_t H = table.size(1);
  Tensor t32 = Tensor::empty(table.shape(), DType::kF32, cpu_allocator());
  PD_CHECK(table.is_contiguous(), "bias table must be contiguous: ", table.desc());
  convert_host(t32.data(), DType::kF32, table.data(), table.dtype(), size_t(table.numel()));
  const float* w = t32.data_as<float>();

  // One bucket per relative position j − i ∈ (−S, S), then bias[h, i, j] = w[bucket(j − i), h].
  std::vector<int> bucket(size_t(2 * S - 1));
  for (int64_t r = -(S - 1); r <= S - 1; ++r)
    bucket[size_t(r + S - 1)] = relative_position_bucket(r, num_buckets, max_distance);
  Tensor bias = Tensor::empty({H, S, S}, DType::kF32, cpu_allocator());
  float* out = bias.data_as<float>();
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < S; ++i)
      for (int64_t j = 0; j < S; ++j) out[(h * S + i) * S + j] = w[bucket[size_t(j - i + S - 1)] * H + h];
  return bias;
}

}  // namespace paradit::t5
