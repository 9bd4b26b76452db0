// Tensor parallelism of the FLUX transformer at load time: which slice of each weight a tp rank holds.
//
// Column-parallel linears (their output features split) give each rank whole outputs of its own; row-parallel
// linears (their input features split) give each rank a partial sum, which the forward all-reduces once per
// half block (flux_blocks.cpp). The attention heads are the unit of the QKV / output-projection split, so
// attention itself runs on local heads with no communication; MLP columns are the unit of the MLP split.
#include <cstring>

#include "models/flux/flux_weights.h"
#include "paradit/core/status.h"
#include "paradit/parallel/sequence_shard.h"

namespace paradit::flux {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

WeightSlice rows(std::vector<WeightSlice::Range> ranges) { return {WeightSlice::Kind::kRows, std::move(ranges)}; }
WeightSlice columns(std::vector<WeightSlice::Range> ranges) {
  return {WeightSlice::Kind::kColumns, std::move(ranges)};
}

}  // namespace

Shape WeightSlice::shape(const Shape& full) const {
  if (kind == Kind::kWhole) return full;
  Shape s = full;
  s[size_t(dim())] = 0;
  for (const Range& r : ranges) s[size_t(dim())] += r.count;
  return s;
}

Tensor WeightSlice::host(const Tensor& full) const {
  if (kind == Kind::kWhole) return full;
  PD_CHECK(kind != Kind::kNone && full.device().is_cpu() && full.is_contiguous() && full.dim() >= dim() + 1,
           "WeightSlice::host of ", full.desc());
  if (kind == Kind::kRows && ranges.size() == 1) return full.slice(0, ranges[0].start, ranges[0].count);
  Tensor out = Tensor::empty(shape(full.shape()), full.dtype(), cpu_allocator());
  const size_t es = full.element_size();
  const char* src = static_cast<const char*>(full.data());
  char* dst = static_cast<char*>(out.data());
  if (kind == Kind::kRows) {
    const size_t row = size_t(full.numel() / full.size(0)) * es;
    for (const Range& r : ranges) {
      std::memcpy(dst, src + size_t(r.start) * row, size_t(r.count) * row);
      dst += size_t(r.count) * row;
    }
  } else {
    const int64_t cols = full.size(1);
    for (int64_t i = 0; i < full.size(0); ++i)
      for (const Range& r : ranges) {
        std::memcpy(dst, src + size_t(i * cols + r.start) * es, size_t(r.count) * es);
        dst += size_t(r.count) * es;
      }
  }
  return out;
}

Tensor WeightSlice::device(Backend& backend, const Tensor& full) const {
  if (kind == Kind::kWhole) return full;
  PD_CHECK(kind != Kind::kNone, "WeightSlice::device of a slice that holds nothing");
  Tensor out = backend.empty(shape(full.shape()), full.dtype());
  int64_t at = 0;
  for (const Range& r : ranges) {
    backend.copy(out.slice(dim(), at, r.count), full.slice(dim(), r.start, r.count));
    at += r.count;
  }
  return out;
}

TensorParallelLayout::TensorParallelLayout(const FluxConfig& config, FluxTensorShard s)
    : shard(s), D(config.hidden()), d(config.attention_head_dim) {
  PD_REQUIRE(s.size >= 1 && s.rank >= 0 && s.rank < s.size, "tensor-parallel shard: rank ", s.rank, " of ", s.size,
             " is out of range");
  const SequenceShard head_shard(config.num_attention_heads, s.size), mlp_shard(4 * D, s.size);
  head_start = head_shard.start(s.rank);
  heads = head_shard.count(s.rank);
  mlp_start = mlp_shard.start(s.rank);
  mlp = mlp_shard.count(s.rank);
}

WeightSlice TensorParallelLayout::slice(const std::string& name, const Shape& full) const {
  if (shard.size == 1) return {};
  const bool bias = ends_with(name, ".bias");
  if (!bias && !ends_with(name, ".weight")) return {};  // q/k norm scales
  const std::string module = name.substr(0, name.rfind('.'));
  const auto is = [&](const char* suffix) { return ends_with(module, suffix); };
  const int64_t a0 = head_start * d, a = heads * d;
  // Row-parallel linears: their input columns here; the bias once, on rank 0.
  const auto row_parallel = [&](std::vector<WeightSlice::Range> ranges) {
    if (bias) return shard.rank == 0 ? WeightSlice{} : WeightSlice{WeightSlice::Kind::kNone, {}};
    return columns(std::move(ranges));
  };

  if (is("_mod.lin") || is("modulation.lin") || is("adaLN_modulation.1")) {
    const SequenceShard out(full[0], shard.size);
    return rows({{out.start(shard.rank), out.count(shard.rank)}});
  }
  if (is("_attn.qkv")) return rows({{a0, a}, {D + a0, a}, {2 * D + a0, a}});
  if (is("_attn.proj")) return row_parallel({{a0, a}});
  if (is("_mlp.0")) return rows({{mlp_start, mlp}});
  if (is("_mlp.2")) return row_parallel({{mlp_start, mlp}});
  if (is(".linear1")) return rows({{a0, a}, {D + a0, a}, {2 * D + a0, a}, {3 * D + mlp_start, mlp}});
  if (is(".linear2")) return row_parallel({{a0, a}, {D + mlp_start, mlp}});
  return {};  // embedders and the final projection: whole on every rank
}

}  // namespace paradit::flux
