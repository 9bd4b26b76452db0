#include "models/flux/flux_weights.h"

#include <map>

#include "paradit/core/status.h"

namespace paradit::flux {

namespace {

class Binder {
 public:
  explicit Binder(std::map<std::string, Tensor> tensors) : tensors_(std::move(tensors)) {}

  Tensor tensor(const std::string& name) const {
    auto it = tensors_.find(name);
    PD_CHECK(it != tensors_.end(), "FluxConfig::tensor_shapes() has no tensor ", name);
    return it->second;
  }
  // The bias is undefined where this rank holds none (a row-parallel linear on tp rank > 0).
  Linear linear(const std::string& prefix) const { return {tensor(prefix + ".weight"), tensor(prefix + ".bias")}; }
  // Rows [start, start + rows) of a fused linear: a contiguous view, so it feeds a GEMM as is.
  Linear rows(const std::string& prefix, int64_t start, int64_t rows) const {
    const Linear l = linear(prefix);
    return {l.w.slice(0, start, rows), l.b.slice(0, start, rows)};
  }

 private:
  std::map<std::string, Tensor> tensors_;
};

StreamWeights stream(const Binder& t, const std::string& p, const std::string& s) {
  return {t.linear(p + s + "_mod.lin"),
          t.linear(p + s + "_attn.qkv"),
          t.tensor(p + s + "_attn.norm.query_norm.scale"),
          t.tensor(p + s + "_attn.norm.key_norm.scale"),
          t.linear(p + s + "_attn.proj"),
          t.linear(p + s + "_mlp.0"),
          t.linear(p + s + "_mlp.2")};
}

// The number after `prefix` at the start of name, or −1.
int index_after(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0) return -1;
  const size_t dot = name.find('.', prefix.size());
  return std::stoi(name.substr(prefix.size(), dot - prefix.size()));
}

}  // namespace

int block_of_tensor(const FluxConfig& config, const std::string& name) {
  const int d = index_after(name, "double_blocks.");
  if (d >= 0) return d;
  const int s = index_after(name, "single_blocks.");
  return s >= 0 ? config.num_layers + s : -1;
}

FluxWeights build_weights(const FluxConfig& config, const TensorParallelLayout& layout, const WeightSource& make,
                          FluxBlockRange blocks) {
  const int total = config.num_layers + config.num_single_layers;
  const int end = blocks.end_or(total);
  PD_REQUIRE(blocks.begin >= 0 && blocks.begin < end && end <= total, "FLUX blocks [", blocks.begin, ", ", end,
             ") out of range: the model has ", total, " blocks");
  const auto held = [&](int block) { return block >= blocks.begin && block < end; };
  FluxWeights w;
  std::map<std::string, Tensor> made;
  for (const auto& [name, shape] : config.tensor_shapes()) {
    const int block = block_of_tensor(config, name);
    if (block >= 0 && !held(block)) continue;
    const WeightSlice slice = layout.slice(name, shape);
    Tensor t = make(name, shape, slice);
    if (slice.kind == WeightSlice::Kind::kNone) {
      PD_CHECK(!t.defined(), name, " should not be held by tensor-parallel rank ", layout.shard.rank);
    } else {
      PD_CHECK(t.shape() == slice.shape(shape), name, " is ", t.desc(), ", expected ",
               shape_str(slice.shape(shape)));
      w.bytes += t.nbytes();
    }
    made.emplace(name, std::move(t));
  }
  const Binder t(std::move(made));
  // linear1's rows here: this rank's q; k; v heads, then its MLP columns.
  const int64_t qkv_rows = 3 * layout.attention(), mlp_rows = layout.mlp;

  w.img_in = t.linear("img_in");
  w.txt_in = t.linear("txt_in");
  w.time_in = t.linear("time_in.in_layer");
  w.time_out = t.linear("time_in.out_layer");
  if (config.guidance_embeds) {
    w.guidance_in = t.linear("guidance_in.in_layer");
    w.guidance_out = t.linear("guidance_in.out_layer");
  }
  w.vector_in = t.linear("vector_in.in_layer");
  w.vector_out = t.linear("vector_in.out_layer");
  w.double_blocks.resize(size_t(config.num_layers));
  w.single_blocks.resize(size_t(config.num_single_layers));
  for (int i = 0; i < config.num_layers; ++i) {
    if (!held(i)) continue;
    const std::string p = "double_blocks." + std::to_string(i) + ".";
    w.double_blocks[size_t(i)] = {stream(t, p, "img"), stream(t, p, "txt")};
  }
  for (int i = 0; i < config.num_single_layers; ++i) {
    if (!held(config.num_layers + i)) continue;
    const std::string p = "single_blocks." + std::to_string(i) + ".";
    w.single_blocks[size_t(i)] = {t.linear(p + "modulation.lin"), t.rows(p + "linear1", 0, qkv_rows),
                                  t.rows(p + "linear1", qkv_rows, mlp_rows), t.tensor(p + "norm.query_norm.scale"),
                                  t.tensor(p + "norm.key_norm.scale"), t.linear(p + "linear2")};
  }
  w.final_mod = t.linear("final_layer.adaLN_modulation.1");
  w.final_out = t.linear("final_layer.linear");
  return w;
}

}  // namespace paradit::flux
