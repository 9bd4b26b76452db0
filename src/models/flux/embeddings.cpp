// Host-side tables of the FLUX forward: the timestep sinusoid and the RoPE cos/sin tables. They are tiny and
// computed once per forward, in the precision diffusers uses, then uploaded.
#include <cmath>
#include <unordered_map>
#include <vector>

#include "models/flux/flux_internal.h"
#include "paradit/core/status.h"

namespace paradit::flux {

Tensor timestep_embedding(const std::vector<float>& t, int dim) {
  PD_REQUIRE(dim > 0 && dim % 2 == 0, "timestep embedding width must be even and positive, got ", dim);
  const int half = dim / 2;
  // torch: exponent = float(-ln(max_period))·k in fp32, divided by half in fp32, then exp in fp32.
  const float neg_log_period = float(-std::log(10000.0));
  std::vector<float> freq(half);
  for (int k = 0; k < half; ++k) freq[k] = std::exp(neg_log_period * float(k) / float(half));

  Tensor e = Tensor::empty({int64_t(t.size()), dim}, DType::kF32, cpu_allocator());
  float* p = e.data_as<float>();
  for (size_t b = 0; b < t.size(); ++b) {
    float* row = p + b * dim;
    for (int k = 0; k < half; ++k) {
      const float arg = t[b] * freq[k];
      row[k] = std::cos(arg);
      row[half + k] = std::sin(arg);
    }
  }
  return e;
}

namespace {

void require_ids(const char* what, const Tensor& ids) {
  PD_REQUIRE(ids.defined() && ids.device().is_cpu() && ids.dtype() == DType::kF32 && ids.dim() == 2 &&
                 ids.size(1) == 3,
             what, " must be a host f32 tensor [tokens, 3], got ",
             ids.defined() ? ids.desc() : std::string("an undefined tensor"));
}

// The cos/sin of one RoPE axis at each distinct position, computed on first use: a grid of h×w tokens has only
// h rows and w columns, so this saves nearly all of the trigonometry (≈13 ms per 1024² forward otherwise).
class AxisTable {
 public:
  AxisTable(int dim, double theta) : freq_(dim / 2) {
    // torch: 1.0 / theta ** (arange(0, d_a, 2, float64) / d_a).
    for (int j = 0; j < dim / 2; ++j) freq_[j] = 1.0 / std::pow(theta, double(2 * j) / double(dim));
  }
  int pairs() const { return int(freq_.size()); }

  // cos at [0, pairs), sin at [pairs, 2·pairs): the angles pos·freq in float64 (the f32 id promoted), cast to f32.
  const float* at(float pos) {
    auto [it, fresh] = offset_.try_emplace(pos, values_.size());
    if (fresh) {
      values_.resize(values_.size() + 2 * freq_.size());
      float* v = values_.data() + it->second;
      for (size_t j = 0; j < freq_.size(); ++j) {
        const double angle = double(pos) * freq_[j];
        v[j] = float(std::cos(angle));
        v[freq_.size() + j] = float(std::sin(angle));
      }
    }
    return values_.data() + it->second;
  }

 private:
  std::vector<double> freq_;
  std::unordered_map<float, size_t> offset_;  // position -> its values in values_
  std::vector<float> values_;
};

}  // namespace

RopeTables rope_tables(const Tensor& txt_ids, const Tensor& img_ids, const std::array<int, 3>& axes_dims,
                       double theta) {
  require_ids("txt_ids", txt_ids);
  require_ids("img_ids", img_ids);
  int width = 0;
  for (int da : axes_dims) {
    PD_REQUIRE(da > 0 && da % 2 == 0, "RoPE axis widths must be even and positive, got ", da);
    width += da;
  }
  const int64_t T = txt_ids.size(0), S = T + img_ids.size(0);
  std::vector<AxisTable> axes;
  for (int da : axes_dims) axes.emplace_back(da, theta);
  RopeTables r{Tensor::empty({S, width}, DType::kF32, cpu_allocator()),
               Tensor::empty({S, width}, DType::kF32, cpu_allocator())};
  for (int64_t s = 0; s < S; ++s) {
    const Tensor& ids = s < T ? txt_ids : img_ids;
    const float* id = ids.data_as<float>() + (s < T ? s : s - T) * ids.stride(0);
    float* cos_row = r.cos.data_as<float>() + s * width;
    float* sin_row = r.sin.data_as<float>() + s * width;
    int lane = 0;
    for (int a = 0; a < 3; ++a) {
      const int n = axes[a].pairs();
      const float* v = axes[a].at(id[a * ids.stride(1)]);
      // repeat_interleave(2): lanes 2j and 2j+1 share frequency j.
      for (int j = 0; j < n; ++j) {
        cos_row[lane + 2 * j] = cos_row[lane + 2 * j + 1] = v[j];
        sin_row[lane + 2 * j] = sin_row[lane + 2 * j + 1] = v[n + j];
      }
      lane += 2 * n;
    }
  }
  return r;
}

}  // namespace paradit::flux
