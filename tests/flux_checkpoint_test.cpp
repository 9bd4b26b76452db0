// FluxCheckpoint: the same tiny model stored in every layout users have must read back as identical internal
// (BFL-named) tensors; bad checkpoints must be refused with the file and the tensor named.
#include "paradit/io/flux_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "paradit/core/allocator.h"
#include "paradit/core/status.h"
#include "paradit/io/safetensors.h"
#include "test_util.h"

namespace paradit {
namespace {

using test::expect_error;

namespace fs = std::filesystem;
using Weights = std::vector<std::pair<std::string, Tensor>>;

// Head dim 8: its RoPE axes cannot be inferred, so a single file needs a config.json.
FluxConfig tiny_config(bool guidance = true) {
  FluxConfig c;
  c.in_channels = 16;
  c.out_channels = 16;
  c.num_layers = 2;
  c.num_single_layers = 3;
  c.attention_head_dim = 8;
  c.num_attention_heads = 2;
  c.joint_attention_dim = 12;
  c.pooled_projection_dim = 10;
  c.guidance_embeds = guidance;
  c.axes_dims_rope = {2, 2, 4};
  return c;
}

// Head dim 128, as every published FLUX.1: a single file is enough.
FluxConfig tiny128_config(bool guidance) {
  FluxConfig c = tiny_config(guidance);
  c.attention_head_dim = 128;
  c.num_attention_heads = 1;
  c.num_layers = 1;
  c.num_single_layers = 2;
  c.axes_dims_rope = {16, 56, 56};
  return c;
}

std::string config_json(const FluxConfig& c) {
  const nlohmann::json j = {{"_class_name", "FluxTransformer2DModel"},
                            {"_diffusers_version", "0.32.0"},
                            {"attention_head_dim", c.attention_head_dim},
                            {"axes_dims_rope", c.axes_dims_rope},
                            {"guidance_embeds", c.guidance_embeds},
                            {"in_channels", c.in_channels},
                            {"joint_attention_dim", c.joint_attention_dim},
                            {"num_attention_heads", c.num_attention_heads},
                            {"num_layers", c.num_layers},
                            {"num_single_layers", c.num_single_layers},
                            {"out_channels", nullptr},  // diffusers writes null: out = in
                            {"patch_size", 1},
                            {"pooled_projection_dim", c.pooled_projection_dim}};
  return j.dump(2);
}

Weights bfl_weights(const FluxConfig& c, uint64_t seed) {
  Weights w;
  for (const auto& [name, shape] : c.tensor_shapes()) w.emplace_back(name, test::random_host(shape, seed++, 0.5f));
  return w;
}

Tensor to_dtype(const Tensor& f32, DType dt) {
  Tensor t = Tensor::empty(f32.shape(), dt, cpu_allocator());
  convert_host(t.data(), dt, f32.data(), DType::kF32, size_t(f32.numel()));
  return t;
}

Weights with_dtype(const Weights& w, DType dt) {
  Weights out;
  for (const auto& [n, t] : w) out.emplace_back(n, to_dtype(t, dt));
  return out;
}

Weights with_prefix(const Weights& w, const std::string& prefix) {
  Weights out;
  for (const auto& [n, t] : w) out.emplace_back(prefix + n, t);
  return out;
}

// Rows [begin, begin + n) of a 1-d or 2-d tensor, as a contiguous copy in the same dtype.
Tensor rows_of(const Tensor& t, int64_t begin, int64_t n) {
  const Tensor s = t.slice(0, begin, n);
  Tensor out = Tensor::empty(s.shape(), t.dtype(), cpu_allocator());
  std::memcpy(out.data(), s.data(), out.nbytes());
  return out;
}

Tensor cat_rows(const Tensor& a, const Tensor& b) {
  Shape shape = a.shape();
  shape[0] += b.shape()[0];
  Tensor out = Tensor::empty(shape, a.dtype(), cpu_allocator());
  std::memcpy(out.data(), a.data(), a.nbytes());
  std::memcpy(static_cast<char*>(out.data()) + a.nbytes(), b.data(), b.nbytes());
  return out;
}

// BFL -> diffusers, written out here by hand from diffusers' single_file_utils.py (not through the library's
// own map, which is what is under test).
Weights to_diffusers(const Weights& bfl, const FluxConfig& c) {
  std::map<std::string, Tensor> w(bfl.begin(), bfl.end());
  const int64_t d = c.hidden();
  Weights out;
  auto put = [&](const std::string& dif, const std::string& b) { out.emplace_back(dif, w.at(b)); };
  auto lin = [&](const std::string& dif, const std::string& b) {
    put(dif + ".weight", b + ".weight");
    put(dif + ".bias", b + ".bias");
  };
  auto split = [&](const std::vector<std::string>& difs, const std::string& b, const std::vector<int64_t>& rows) {
    for (const std::string p : {".weight", ".bias"}) {
      int64_t off = 0;
      for (size_t i = 0; i < difs.size(); ++i) {
        out.emplace_back(difs[i] + p, rows_of(w.at(b + p), off, rows[i]));
        off += rows[i];
      }
    }
  };
  lin("x_embedder", "img_in");
  lin("context_embedder", "txt_in");
  lin("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer");
  lin("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer");
  lin("time_text_embed.text_embedder.linear_1", "vector_in.in_layer");
  lin("time_text_embed.text_embedder.linear_2", "vector_in.out_layer");
  if (c.guidance_embeds) {
    lin("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer");
    lin("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer");
  }
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string t = "transformer_blocks." + std::to_string(i) + ".",
                      b = "double_blocks." + std::to_string(i) + ".";
    lin(t + "norm1.linear", b + "img_mod.lin");
    lin(t + "norm1_context.linear", b + "txt_mod.lin");
    split({t + "attn.to_q", t + "attn.to_k", t + "attn.to_v"}, b + "img_attn.qkv", {d, d, d});
    split({t + "attn.add_q_proj", t + "attn.add_k_proj", t + "attn.add_v_proj"}, b + "txt_attn.qkv", {d, d, d});
    put(t + "attn.norm_q.weight", b + "img_attn.norm.query_norm.scale");
    put(t + "attn.norm_k.weight", b + "img_attn.norm.key_norm.scale");
    put(t + "attn.norm_added_q.weight", b + "txt_attn.norm.query_norm.scale");
    put(t + "attn.norm_added_k.weight", b + "txt_attn.norm.key_norm.scale");
    lin(t + "attn.to_out.0", b + "img_attn.proj");
    lin(t + "attn.to_add_out", b + "txt_attn.proj");
    lin(t + "ff.net.0.proj", b + "img_mlp.0");
    lin(t + "ff.net.2", b + "img_mlp.2");
    lin(t + "ff_context.net.0.proj", b + "txt_mlp.0");
    lin(t + "ff_context.net.2", b + "txt_mlp.2");
  }
  for (int i = 0; i < c.num_single_layers; ++i) {
    const std::string t = "single_transformer_blocks." + std::to_string(i) + ".";
    const std::string b = "single_blocks." + std::to_string(i) + ".";
    split({t + "attn.to_q", t + "attn.to_k", t + "attn.to_v", t + "proj_mlp"}, b + "linear1", {d, d, d, 4 * d});
    lin(t + "proj_out", b + "linear2");
    lin(t + "norm.linear", b + "modulation.lin");
    put(t + "attn.norm_q.weight", b + "norm.query_norm.scale");
    put(t + "attn.norm_k.weight", b + "norm.key_norm.scale");
  }
  lin("proj_out", "final_layer.linear");
  for (const std::string p : {".weight", ".bias"}) {  // BFL (shift; scale) -> diffusers (scale; shift)
    const Tensor& m = w.at("final_layer.adaLN_modulation.1" + p);
    out.emplace_back("norm_out.linear" + p, cat_rows(rows_of(m, d, d), rows_of(m, 0, d)));
  }
  return out;
}

Weights without(const Weights& w, const std::string& name) {
  Weights out;
  for (const auto& kv : w)
    if (kv.first != name) out.push_back(kv);
  EXPECT_EQ(out.size() + 1, w.size()) << name << " was not there to drop";
  return out;
}

Weights replaced(const Weights& w, const std::string& name, const Tensor& t) {
  Weights out = w;
  bool found = false;
  for (auto& kv : out)
    if (kv.first == name) kv.second = t, found = true;
  EXPECT_TRUE(found) << name;
  return out;
}

class FluxCheckpointTest : public test::ScratchDirTest {
 protected:

  void write_text(const std::string& rel, const std::string& text) const {
    fs::create_directories(fs::path(path(rel)).parent_path());
    std::ofstream(path(rel)) << text;
  }
  std::string write_file(const std::string& rel, const Weights& w) const {
    fs::create_directories(fs::path(path(rel)).parent_path());
    write_safetensors(path(rel), w, {{"format", "pt"}});
    return path(rel);
  }
  // A diffusers transformer folder: config.json and the weights in `shards` files (with an index when > 1).
  std::string write_diffusers_folder(const std::string& rel, const Weights& w, const FluxConfig& c, int shards) const {
    write_text(rel + "/config.json", config_json(c));
    if (shards == 1) {
      write_file(rel + "/diffusion_pytorch_model.safetensors", w);
      return path(rel);
    }
    std::vector<Weights> parts(shards);
    nlohmann::json map = nlohmann::json::object();
    for (size_t i = 0; i < w.size(); ++i) {
      const int s = int(i * shards / w.size());
      parts[s].push_back(w[i]);
      map[w[i].first] =
          "diffusion_pytorch_model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(shards) + ".safetensors";
    }
    for (int s = 0; s < shards; ++s)
      write_file(rel + "/diffusion_pytorch_model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(shards) +
                     ".safetensors",
                 parts[s]);
    write_text(rel + "/diffusion_pytorch_model.safetensors.index.json",
               nlohmann::json({{"metadata", {{"total_size", 0}}}, {"weight_map", map}}).dump());
    return path(rel);
  }
};

// Every internal tensor equals the reference exactly (as f32), and nothing is left over.
void expect_same_tensors(const FluxCheckpoint& ck, const Weights& want) {
  ASSERT_EQ(ck.config().tensor_shapes().size(), want.size());
  for (const auto& [name, t] : want) {
    const Tensor got = ck.get(name);
    ASSERT_EQ(got.shape(), t.shape()) << name;
    EXPECT_EQ(test::max_abs_diff(test::to_contiguous_f32(got), test::to_contiguous_f32(t)), 0.0) << name;
  }
}

TEST(FluxConfig, PublishedConfigsAndTensorList) {
  const FluxConfig dev = FluxConfig::dev(), schnell = FluxConfig::schnell();
  EXPECT_TRUE(dev.guidance_embeds);
  EXPECT_FALSE(schnell.guidance_embeds);
  EXPECT_EQ(dev.hidden(), 3072);
  EXPECT_EQ(dev.num_layers, 19);
  EXPECT_EQ(dev.num_single_layers, 38);
  EXPECT_EQ(dev.axes_dims_rope, (std::array<int, 3>{16, 56, 56}));
  // flux1-dev.safetensors holds 780 tensors; schnell lacks the 4 of guidance_in.
  const auto ds = dev.tensor_shapes(), ss = schnell.tensor_shapes();
  EXPECT_EQ(ds.size(), 780u);
  EXPECT_EQ(ss.size(), 776u);
  std::map<std::string, Shape> m(ds.begin(), ds.end());
  EXPECT_EQ(m.size(), ds.size()) << "duplicate names";
  EXPECT_EQ(m.at("img_in.weight"), (Shape{3072, 64}));
  EXPECT_EQ(m.at("txt_in.weight"), (Shape{3072, 4096}));
  EXPECT_EQ(m.at("time_in.in_layer.weight"), (Shape{3072, 256}));
  EXPECT_EQ(m.at("vector_in.in_layer.weight"), (Shape{3072, 768}));
  EXPECT_EQ(m.at("guidance_in.out_layer.bias"), (Shape{3072}));
  EXPECT_EQ(m.at("double_blocks.18.img_mod.lin.weight"), (Shape{18432, 3072}));
  EXPECT_EQ(m.at("double_blocks.0.txt_attn.qkv.weight"), (Shape{9216, 3072}));
  EXPECT_EQ(m.at("double_blocks.0.txt_attn.norm.key_norm.scale"), (Shape{128}));
  EXPECT_EQ(m.at("double_blocks.3.img_mlp.2.weight"), (Shape{3072, 12288}));
  EXPECT_EQ(m.at("single_blocks.37.linear1.weight"), (Shape{21504, 3072}));
  EXPECT_EQ(m.at("single_blocks.0.linear2.weight"), (Shape{3072, 15360}));
  EXPECT_EQ(m.at("single_blocks.0.modulation.lin.bias"), (Shape{9216}));
  EXPECT_EQ(m.at("final_layer.adaLN_modulation.1.weight"), (Shape{6144, 3072}));
  EXPECT_EQ(m.at("final_layer.linear.weight"), (Shape{64, 3072}));
  EXPECT_EQ(m.count("single_blocks.0.norm.query_norm.bias"), 0u);  // norm scales have no bias
  EXPECT_EQ(m.count("single_blocks.38.linear1.weight"), 0u);
  for (const auto& [n, s] : ss) EXPECT_EQ(n.rfind("guidance_in", 0), std::string::npos) << n;
}

TEST(FluxConfig, ParsesDiffusersConfig) {
  const FluxConfig c = tiny_config();
  EXPECT_EQ(FluxConfig::from_diffusers_json(config_json(c), "cfg"), c);
  // Absent keys take diffusers' defaults (guidance_embeds false there).
  EXPECT_EQ(FluxConfig::from_diffusers_json("{}", "cfg"), FluxConfig::schnell());
  expect_error([] { FluxConfig::from_diffusers_json(R"({"num_layers": -3})", "my/config.json"); },
               StatusCode::kCorruptData, {"my/config.json", "num_layers"});
  expect_error([] { FluxConfig::from_diffusers_json(R"({"_class_name": "SD3Transformer2DModel"})", "my/config.json"); },
               StatusCode::kInvalidArgument, {"my/config.json", "SD3Transformer2DModel"});
  expect_error([] { FluxConfig::from_diffusers_json(R"({"axes_dims_rope": [16, 56, 58]})", "my/config.json"); },
               StatusCode::kInvalidArgument, {"my/config.json", "axes_dims_rope"});
  expect_error([] { FluxConfig::from_diffusers_json("{", "my/config.json"); }, StatusCode::kCorruptData,
               {"my/config.json"});
}

TEST_F(FluxCheckpointTest, BflSingleFileWithAndWithoutPrefix) {
  for (bool guidance : {true, false}) {
    const FluxConfig c = tiny128_config(guidance);
    const Weights w = bfl_weights(c, 100);
    for (const std::string prefix : {"", "model.diffusion_model."}) {
      const std::string file =
          write_file("bfl" + std::to_string(guidance) + prefix + ".safetensors", with_prefix(w, prefix));
      const FluxCheckpoint ck = FluxCheckpoint::open(file);
      EXPECT_EQ(ck.layout(), "bfl");
      EXPECT_EQ(ck.source(), file);
      EXPECT_EQ(ck.config(), c) << ck.config().summary() << " vs " << c.summary();  // dev vs schnell included
      expect_same_tensors(ck, w);
    }
  }
}

TEST_F(FluxCheckpointTest, AllInOneFileIgnoresOtherComponents) {
  const FluxConfig c = tiny128_config(true);
  const Weights w = bfl_weights(c, 200);
  Weights all = with_prefix(w, "model.diffusion_model.");
  all.emplace_back("first_stage_model.decoder.conv_in.weight", test::random_host({4, 4}, 1));
  all.emplace_back("text_encoders.clip_l.transformer.text_model.final_layer_norm.weight", test::random_host({8}, 2));
  const FluxCheckpoint ck = FluxCheckpoint::open(write_file("all.safetensors", all));
  EXPECT_EQ(ck.config(), c);
  expect_same_tensors(ck, w);
}

TEST_F(FluxCheckpointTest, DiffusersLayoutsMatchBfl) {
  const FluxConfig c = tiny_config();
  const Weights w = bfl_weights(c, 300);
  const Weights dif = to_diffusers(w, c);
  const std::string single = write_diffusers_folder("single/transformer", dif, c, 1);
  const std::string sharded = write_diffusers_folder("sharded", dif, c, 3);
  write_text("single/model_index.json", R"({"_class_name": "FluxPipeline"})");
  const std::string loose = write_file("loose/flux_diffusers_names.safetensors", dif);
  const std::string bfl = write_file("bfl.safetensors", with_prefix(w, "model.diffusion_model."));
  write_text("cfg/config.json", config_json(c));
  struct Case {
    std::string path, config, layout;
  } cases[] = {
      {single, "", "diffusers"},
      {path("single"), "", "diffusers"},  // pipeline root
      {sharded, "", "diffusers"},
      {sharded + "/diffusion_pytorch_model.safetensors.index.json", "", "diffusers"},
      {loose, path("cfg/config.json"), "diffusers"},
      {loose, path("cfg"), "diffusers"},
      {loose, config_json(c), "diffusers"},
      {bfl, path("cfg/config.json"), "bfl"},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.path + " / " + k.config.substr(0, 40));
    const FluxCheckpoint ck = FluxCheckpoint::open(k.path, k.config);
    EXPECT_EQ(ck.layout(), k.layout);
    EXPECT_EQ(ck.config(), c);
    expect_same_tensors(ck, w);
  }
}

// bf16 storage: single tensors come back as views in bf16, fused ones as f32, and both namings agree exactly.
TEST_F(FluxCheckpointTest, Bf16DtypesAndNamingsAgree) {
  const FluxConfig c = tiny_config(false);
  const Weights w = with_dtype(bfl_weights(c, 400), DType::kBF16);
  const FluxCheckpoint dif = FluxCheckpoint::open(write_diffusers_folder("d", to_diffusers(w, c), c, 2));
  const FluxCheckpoint bfl = FluxCheckpoint::open(write_file("b.safetensors", w), path("d"));
  expect_same_tensors(dif, w);
  expect_same_tensors(bfl, w);
  EXPECT_EQ(dif.get("double_blocks.1.img_mlp.0.weight").dtype(), DType::kBF16);
  EXPECT_EQ(dif.get("double_blocks.1.img_attn.qkv.weight").dtype(), DType::kF32);
  EXPECT_EQ(dif.get("single_blocks.2.linear1.bias").dtype(), DType::kF32);
  EXPECT_EQ(dif.get("final_layer.adaLN_modulation.1.weight").dtype(), DType::kF32);
  EXPECT_EQ(bfl.get("double_blocks.1.img_attn.qkv.weight").dtype(), DType::kBF16);  // stored fused: a view
}

// Checked against the stored diffusers tensor itself: internal rows [0, D) are diffusers' rows [D, 2D).
TEST_F(FluxCheckpointTest, FinalLayerHalvesAreSwapped) {
  const FluxConfig c = tiny_config();
  const int64_t d = c.hidden();
  const std::string folder = write_diffusers_folder("d", to_diffusers(bfl_weights(c, 500), c), c, 1);
  const FluxCheckpoint ck = FluxCheckpoint::open(folder);
  const SafetensorsSet stored = SafetensorsSet::open(folder);
  for (const std::string p : {".weight", ".bias"}) {
    const Tensor dif = stored.get("norm_out.linear" + p);             // scale; shift
    const Tensor got = ck.get("final_layer.adaLN_modulation.1" + p);  // shift; scale
    ASSERT_EQ(got.shape(), dif.shape());
    EXPECT_EQ(test::max_abs_diff(got.slice(0, 0, d), dif.slice(0, d, d)), 0.0) << p;
    EXPECT_EQ(test::max_abs_diff(got.slice(0, d, d), dif.slice(0, 0, d)), 0.0) << p;
    EXPECT_GT(test::max_abs_diff(got, dif), 0.0) << p;  // unswapped would differ
  }
}

TEST_F(FluxCheckpointTest, MissingTensors) {
  const FluxConfig c = tiny_config();
  const Weights w = bfl_weights(c, 600);
  const std::string bfl = write_file(
      "bfl.safetensors", with_prefix(without(w, "double_blocks.1.txt_mlp.2.bias"), "model.diffusion_model."));
  expect_error([&] { FluxCheckpoint::open(bfl, config_json(c)); }, StatusCode::kNotFound,
               {bfl, "model.diffusion_model.double_blocks.1.txt_mlp.2.bias"});
  const std::string dif =
      write_diffusers_folder("d", without(to_diffusers(w, c), "transformer_blocks.0.attn.to_k.weight"), c, 1);
  expect_error([&] { FluxCheckpoint::open(dif); }, StatusCode::kNotFound,
               {dif, "transformer_blocks.0.attn.to_k.weight", "double_blocks.0.img_attn.qkv.weight"});
  // A whole block fewer than config.json says.
  Weights short_w;
  for (const auto& kv : to_diffusers(w, c))
    if (kv.first.rfind("single_transformer_blocks.2.", 0) != 0) short_w.push_back(kv);
  const std::string s = write_diffusers_folder("s", short_w, c, 1);
  expect_error([&] { FluxCheckpoint::open(s); }, StatusCode::kInvalidArgument,
               {s, "config.json", "num_single_layers 3", "2 single blocks"});
  expect_error([&] { FluxCheckpoint::open(path("nowhere")); }, StatusCode::kNotFound, {path("nowhere")});
  const FluxCheckpoint ok = FluxCheckpoint::open(write_diffusers_folder("ok", to_diffusers(w, c), c, 1));
  expect_error([&] { ok.get("double_blocks.2.img_mod.lin.weight"); }, StatusCode::kNotFound,
               {"double_blocks.2.img_mod.lin.weight", path("ok")});
}

TEST_F(FluxCheckpointTest, WrongShapes) {
  const FluxConfig c = tiny_config();
  const int64_t d = c.hidden();
  const Weights w = bfl_weights(c, 700);
  const std::string bfl =
      write_file("bfl.safetensors", replaced(w, "single_blocks.1.linear2.weight", test::random_host({d, d}, 9)));
  expect_error([&] { FluxCheckpoint::open(bfl, config_json(c)); }, StatusCode::kCorruptData,
               {bfl, "single_blocks.1.linear2.weight", shape_str({d, d}), shape_str({d, 5 * d})});
  const Weights dif =
      replaced(to_diffusers(w, c), "single_transformer_blocks.0.proj_mlp.bias", test::random_host({3 * d}, 9));
  const std::string folder = write_diffusers_folder("d", dif, c, 1);
  expect_error([&] { FluxCheckpoint::open(folder); }, StatusCode::kCorruptData,
               {folder + "/diffusion_pytorch_model.safetensors", "single_transformer_blocks.0.proj_mlp.bias",
                shape_str({3 * d}), shape_str({4 * d})});
}

TEST_F(FluxCheckpointTest, NotFluxAndUnknownKeys) {
  const std::string other =
      write_file("sd.safetensors", {{"model.diffusion_model.input_blocks.0.0.weight", test::random_host({4}, 1)}});
  expect_error([&] { FluxCheckpoint::open(other); }, StatusCode::kCorruptData,
               {other, "not a FLUX transformer", "double_blocks.0.img_attn.norm.key_norm.scale",
                "transformer_blocks.0.attn.norm_k.weight"});
  const FluxConfig c = tiny128_config(true);
  Weights w = bfl_weights(c, 800);
  w.emplace_back("double_blocks.0.img_attn.qkv.scale_weight", test::random_host({1}, 3));  // an fp8-scaled variant
  const std::string extra = write_file("extra.safetensors", w);
  expect_error([&] { FluxCheckpoint::open(extra); }, StatusCode::kCorruptData,
               {extra, "double_blocks.0.img_attn.qkv.scale_weight"});
}

TEST_F(FluxCheckpointTest, ConfigProblems) {
  const FluxConfig c = tiny_config();
  const Weights w = bfl_weights(c, 900);
  const std::string bfl = write_file("bfl.safetensors", w);
  expect_error([&] { FluxCheckpoint::open(bfl); }, StatusCode::kInvalidArgument, {bfl, "head dim 8", "config_json"});
  FluxConfig wrong = c;
  wrong.num_layers = 3;
  expect_error([&] { FluxCheckpoint::open(bfl, config_json(wrong)); }, StatusCode::kInvalidArgument,
               {bfl, "num_layers 3", "2 double blocks"});
  expect_error([&] { FluxCheckpoint::open(bfl, config_json(tiny_config(false))); }, StatusCode::kInvalidArgument,
               {bfl, "guidance_embeds"});
  expect_error([&] { FluxCheckpoint::open(bfl, path("missing/config.json")); }, StatusCode::kNotFound,
               {path("missing/config.json")});
  const std::string folder = write_diffusers_folder("d", to_diffusers(w, c), c, 1);
  write_text("d/config.json", "{\"num_layers\": ");
  expect_error([&] { FluxCheckpoint::open(folder); }, StatusCode::kCorruptData, {folder + "/config.json"});
}

TEST_F(FluxCheckpointTest, RefusesFillAndDepth) {
  for (int in : {384, 128}) {
    FluxConfig c = tiny128_config(true);
    c.in_channels = in;
    const std::string file = write_file("v" + std::to_string(in) + ".safetensors", bfl_weights(c, 1000));
    expect_error([&] { FluxCheckpoint::open(file); }, StatusCode::kUnimplemented,
                 {file, in == 384 ? "Fill" : "Depth", "img_in.weight"});
  }
}

// Fixtures written by diffusers itself (tools/make_fixtures.py): the folder and the BFL single file of each
// model must give identical internal tensors, and the single file's inferred structure the folder's config.
void check_fixture(const std::string& name, bool guidance, const std::string& bfl_prefix, size_t tensors) {
  const std::string root = test::fixtures_dir() + "/" + name;
  const std::string bfl_file = root + "/" + name + "_bfl.safetensors";
  const FluxCheckpoint dif = FluxCheckpoint::open(root + "/transformer");
  const FluxCheckpoint from_root = FluxCheckpoint::open(root);
  const FluxCheckpoint bfl = FluxCheckpoint::open(bfl_file, root + "/transformer/config.json");
  EXPECT_EQ(dif.layout(), "diffusers");
  EXPECT_EQ(bfl.layout(), "bfl");
  EXPECT_EQ(dif.config().guidance_embeds, guidance);
  EXPECT_EQ(bfl.config(), dif.config());
  EXPECT_EQ(from_root.config(), dif.config());
  EXPECT_EQ(dif.config().axes_dims_rope, (std::array<int, 3>{4, 6, 6}));
  // The stored BFL file really has (or lacks) the prefix: check its raw keys.
  const auto keys = SafetensorsFile::open(bfl_file).names();
  EXPECT_EQ(std::count(keys.begin(), keys.end(), bfl_prefix + "img_in.weight"), 1);
  int compared = 0;
  for (const auto& [tname, shape] : dif.config().tensor_shapes()) {
    const Tensor a = test::to_contiguous_f32(dif.get(tname)), b = test::to_contiguous_f32(bfl.get(tname));
    ASSERT_EQ(a.shape(), shape) << tname;
    ASSERT_EQ(b.shape(), shape) << tname;
    EXPECT_EQ(test::max_abs_diff(a, b), 0.0) << tname;
    EXPECT_EQ(test::max_abs_diff(a, test::to_contiguous_f32(from_root.get(tname))), 0.0) << tname;
    float peak = 0;  // all-zero tensors would make the equality above vacuous
    for (int64_t i = 0; i < a.numel(); ++i) peak = std::max(peak, std::fabs(a.data_as<float>()[i]));
    EXPECT_GT(peak, 0.0f) << tname;
    ++compared;
  }
  EXPECT_EQ(size_t(compared), tensors);
  EXPECT_EQ(keys.size(), tensors) << "the BFL file holds exactly the internal tensors";
  // Without the config, head dim 16 leaves the RoPE axes unknown: refused, asking for config_json.
  expect_error([&] { FluxCheckpoint::open(bfl_file); }, StatusCode::kInvalidArgument, {bfl_file, "config_json"});
}

TEST(FluxCheckpointFixtures, DevTiny) { check_fixture("flux_dev_tiny", true, "model.diffusion_model.", 92); }
TEST(FluxCheckpointFixtures, SchnellTiny) { check_fixture("flux_schnell_tiny", false, "", 56); }

}  // namespace
}  // namespace paradit
