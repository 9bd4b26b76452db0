// The CLIP text encoder and the T5 encoder on the CPU backend against transformers: the tiny fixtures' outputs
// loaded from every file layout (transformers folders, a pipeline root, ComfyUI single files with and without
// prefixes); CLIP pooling rules; T5's bucket table and position bias; configs; and refusals that name the file and
// the tensor.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "../src/models/t5/t5_internal.h"
#include "paradit/io/safetensors.h"
#include "paradit/models/clip_text.h"
#include "paradit/models/t5_encoder.h"
#include "test_util.h"

namespace paradit {
namespace {

using test::code_of;

namespace fs = std::filesystem;

constexpr double kTol = 1e-5;  // fp32 CPU vs transformers

std::string fixture(const std::string& rel = "") {
  const std::string dir = test::fixtures_dir() + "/text_encoders";
  return rel.empty() ? dir : dir + "/" + rel;
}

SafetensorsFile io_file(const std::string& name) {
  return SafetensorsFile::open(fixture("io_" + name + ".safetensors"));
}

// Token ids stored as exact floats, and the batch (first dimension).
std::vector<int32_t> ids_of(const Tensor& t) {
  const Tensor c = test::to_contiguous_f32(t);
  std::vector<int32_t> ids(size_t(c.numel()));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(c.data_as<float>()[i]);
  return ids;
}

// ---------------------------------------------------------------------------------------------------------------
// CLIP
// ---------------------------------------------------------------------------------------------------------------

struct ClipCase {
  std::string label, io, path, config;  // config: "" or a folder relative to the fixtures
};

class ClipFixture : public ::testing::TestWithParam<ClipCase> {};

TEST_P(ClipFixture, MatchesTransformers) {
  const ClipCase& c = GetParam();
  const SafetensorsFile io = io_file(c.io);
  auto backend = create_cpu_backend();
  auto model = ClipTextModel::load(*backend, fixture(c.path), c.config.empty() ? "" : fixture(c.config));
  const ClipTextConfig& cfg = model->config();
  EXPECT_EQ(cfg.hidden_size, 32);
  EXPECT_EQ(cfg.num_hidden_layers, 2);
  EXPECT_EQ(cfg.eos_token_id, c.io == "clip_legacy" ? 2 : 998);
  // 51616 parameters (the fixture README), uploaded as f32.
  EXPECT_EQ(model->weight_bytes(), size_t(51616) * 4);

  const Tensor ids_t = io.get("input_ids");
  const std::vector<int32_t> ids = ids_of(ids_t);
  const int64_t B = ids_t.size(0);
  const std::vector<int64_t> pos = clip_pool_positions(ids, B, cfg.eos_token_id);
  const std::vector<int32_t> want_pos = ids_of(io.get("pool_index"));
  ASSERT_EQ(pos.size(), want_pos.size());
  for (size_t b = 0; b < pos.size(); ++b) EXPECT_EQ(pos[b], want_pos[b]) << "row " << b;

  const ClipTextOutput out = model->forward(ids, B);
  EXPECT_LE(test::rel_l2(backend->download_f32(out.last_hidden_state), io.get("last_hidden_state")), kTol);
  EXPECT_LE(test::rel_l2(backend->download_f32(out.pooler_output), io.get("pooler_output")), kTol);

  // A second forward reuses nothing stale.
  const ClipTextOutput again = model->forward(ids, B);
  EXPECT_EQ(test::max_abs_diff(backend->download_f32(again.pooler_output), backend->download_f32(out.pooler_output)),
            0.0);
}

INSTANTIATE_TEST_SUITE_P(Layouts, ClipFixture,
                         ::testing::Values(ClipCase{"legacy_folder", "clip_legacy", "text_encoder", ""},
                                           ClipCase{"legacy_pipeline_root", "clip_legacy", "", ""},
                                           ClipCase{"legacy_comfyui_file", "clip_legacy", "clip_l.safetensors",
                                                    "text_encoder"},
                                           ClipCase{"modern_folder_v5_names", "clip_modern", "clip_modern", ""},
                                           ClipCase{"modern_prefixed_file", "clip_modern",
                                                    "clip_modern_prefixed.safetensors", "clip_modern/config.json"}),
                         [](const auto& info) { return info.param.label; });

TEST(ClipPooling, TransformersRules) {
  // Legacy (eos_token_id 2): the first position of the largest id, whatever eos is.
  EXPECT_EQ(clip_pool_positions({5, 9, 3, 9, 9, 0}, 1, 2), (std::vector<int64_t>{1}));
  EXPECT_EQ(clip_pool_positions({7, 7, 7}, 1, 2), (std::vector<int64_t>{0}));
  // Otherwise: the first eos_token_id, 0 when absent; two rows.
  EXPECT_EQ(clip_pool_positions({1, 49407, 5, 49407, 1, 2, 3, 4}, 2, 49407), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(code_of([] { clip_pool_positions({1, 2, 3}, 2, 2); }), StatusCode::kInvalidArgument);
}

TEST(ClipConfigJson, DefaultsWrapperAndRefusals) {
  // CLIPConfig wraps the text tower's config; absent keys take CLIPTextConfig's defaults (eos 49407).
  const ClipTextConfig c = ClipTextConfig::from_json(
      R"({"model_type": "clip", "text_config": {"hidden_size": 768, "num_attention_heads": 12,
          "intermediate_size": 3072}})",
      "wrapped");
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.vocab_size, 49408);
  EXPECT_EQ(c.eos_token_id, 49407);
  EXPECT_EQ(c.hidden_act, "quick_gelu");
  // FLUX.1's text_encoder/config.json is CLIP-L with the legacy eos id.
  const ClipTextConfig flux = ClipTextConfig::from_json(
      R"({"architectures": ["CLIPTextModel"], "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "quick_gelu",
          "hidden_size": 768, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
          "model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
          "projection_dim": 768, "vocab_size": 49408})",
      "flux");
  EXPECT_EQ(flux, ClipTextConfig::clip_l());

  std::string what;
  EXPECT_EQ(code_of([&] { ClipTextConfig::from_json(R"({"hidden_act": "gelu"})", "bigG.json"); }, &what),
            StatusCode::kUnimplemented);
  EXPECT_NE(what.find("bigG.json"), std::string::npos) << what;
  EXPECT_EQ(code_of([] { ClipTextConfig::from_json(R"({"hidden_size": 30, "num_attention_heads": 4})", "x"); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { ClipTextConfig::from_json(R"({"model_type": "t5"})", "x"); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { ClipTextConfig::from_json(R"({"hidden_size": "big"})", "x"); }), StatusCode::kCorruptData);
  EXPECT_EQ(code_of([] { ClipTextConfig::from_json("{not json", "x"); }), StatusCode::kCorruptData);
}

TEST(ClipInputs, RefusesBadIds) {
  auto backend = create_cpu_backend();
  auto model = ClipTextModel::load(*backend, fixture("text_encoder"));
  std::string what;
  std::vector<int32_t> ids(77, 5);
  ids[40] = 1000;  // vocab is 1000
  EXPECT_EQ(code_of([&] { model->forward(ids, 1); }, &what), StatusCode::kInvalidArgument);
  EXPECT_NE(what.find("position 40"), std::string::npos) << what;
  EXPECT_EQ(code_of([&] { model->forward(std::vector<int32_t>(78, 5), 1); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { model->forward(std::vector<int32_t>(77, 5), 2); }), StatusCode::kInvalidArgument);
  // Shorter sequences are fine (positions 0..S-1).
  EXPECT_EQ(model->forward(std::vector<int32_t>(10, 5), 2).last_hidden_state.shape(), (Shape{2, 5, 32}));
}

// ---------------------------------------------------------------------------------------------------------------
// T5
// ---------------------------------------------------------------------------------------------------------------

struct T5Case {
  std::string label, path;
};

class T5Fixture : public ::testing::TestWithParam<T5Case> {};

TEST_P(T5Fixture, MatchesTransformers) {
  const SafetensorsFile io = io_file("t5");
  auto backend = create_cpu_backend();
  auto model = T5Encoder::load(*backend, fixture(GetParam().path));
  // Single files carry no config: it is inferred from the shapes and must equal the folder's.
  const T5Config folder = T5Encoder::load(*backend, fixture("text_encoder_2"))->config();
  EXPECT_EQ(model->config(), folder) << model->config().summary() << " vs " << folder.summary();
  EXPECT_EQ(folder.d_model, 32);
  EXPECT_EQ(folder.d_kv, 8);
  EXPECT_EQ(folder.num_heads, 4);
  EXPECT_EQ(folder.d_ff, 48);
  EXPECT_EQ(folder.num_layers, 2);
  EXPECT_EQ(model->weight_bytes(), size_t(49696 - 32 * 4) * 4);  // the bias table stays on the host

  for (const std::string c : {"short", "long"}) {
    const Tensor ids_t = io.get(c + "_input_ids");
    const Tensor out = backend->download_f32(model->forward(ids_of(ids_t), ids_t.size(0)));
    EXPECT_LE(test::rel_l2(out, io.get(c + "_last_hidden_state")), kTol) << c;
  }
  // Back to the short length: the cached bias is remade for it.
  const Tensor ids_t = io.get("short_input_ids");
  EXPECT_LE(test::rel_l2(backend->download_f32(model->forward(ids_of(ids_t), 2)), io.get("short_last_hidden_state")),
            kTol);
}

INSTANTIATE_TEST_SUITE_P(Layouts, T5Fixture,
                         ::testing::Values(T5Case{"sharded_folder", "text_encoder_2"},
                                           T5Case{"sharded_index", "text_encoder_2/model.safetensors.index.json"},
                                           T5Case{"pipeline_root", ""},
                                           T5Case{"comfyui_file_shared", "t5xxl_fp16.safetensors"},
                                           T5Case{"prefixed_file_embed_tokens", "t5_prefixed.safetensors"}),
                         [](const auto& info) { return info.param.label; });

TEST(T5PositionBias, BucketsMatchTransformers) {
  const SafetensorsFile io = io_file("t5");
  const Tensor rel = test::to_contiguous_f32(io.get("relative_position"));
  const Tensor want = test::to_contiguous_f32(io.get("relative_bucket"));
  ASSERT_EQ(rel.numel(), 1201);
  for (int64_t i = 0; i < rel.numel(); ++i) {
    const int64_t r = int64_t(rel.data_as<float>()[i]);
    EXPECT_EQ(t5::relative_position_bucket(r, 32, 128), int(want.data_as<float>()[i])) << "relative position " << r;
  }
}

TEST(T5PositionBias, Layer0BiasMatchesTransformers) {
  const SafetensorsFile io = io_file("t5");
  const Tensor table = SafetensorsSet::open(fixture("text_encoder_2"))
                           .get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
  const Tensor bias = t5::position_bias(table, 40, 32, 128);
  // A gather of the same f32 values: exact.
  EXPECT_EQ(test::max_abs_diff(bias, io.get("short_position_bias")), 0.0);
}

TEST(T5ConfigJson, FluxConfigAndRefusals) {
  // FLUX.1's text_encoder_2/config.json (T5 v1.1 XXL), decoder keys and all.
  const T5Config flux = T5Config::from_json(
      R"({"architectures": ["T5EncoderModel"], "d_ff": 10240, "d_kv": 64, "d_model": 4096, "decoder_start_token_id": 0,
          "dense_act_fn": "gelu_new", "dropout_rate": 0.1, "eos_token_id": 1, "feed_forward_proj": "gated-gelu",
          "initializer_factor": 1.0, "is_encoder_decoder": true, "is_gated_act": true, "layer_norm_epsilon": 1e-06,
          "model_type": "t5", "num_decoder_layers": 24, "num_heads": 64, "num_layers": 24, "output_past": true,
          "pad_token_id": 0, "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32,
          "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 32128})",
      "flux");
  EXPECT_EQ(flux, T5Config::v1_1_xxl());
  std::string what;
  // T5Config's default feed_forward_proj is "relu" (T5 v1.0).
  EXPECT_EQ(code_of([&] { T5Config::from_json(R"({"model_type": "t5"})", "v10.json"); }, &what),
            StatusCode::kUnimplemented);
  EXPECT_NE(what.find("v10.json"), std::string::npos) << what;
  EXPECT_EQ(code_of([] { T5Config::from_json(R"({"model_type": "umt5", "feed_forward_proj": "gated-gelu"})", "x"); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { T5Config::from_json(R"({"feed_forward_proj": "gated-gelu", "num_heads": -1})", "x"); }),
            StatusCode::kCorruptData);
}

TEST(T5Inputs, RefusesBadIds) {
  auto backend = create_cpu_backend();
  auto model = T5Encoder::load(*backend, fixture("t5xxl_fp16.safetensors"));
  std::string what;
  EXPECT_EQ(code_of([&] { model->forward({1, 2, -3, 4}, 1); }, &what), StatusCode::kInvalidArgument);
  EXPECT_NE(what.find("-3"), std::string::npos) << what;
  EXPECT_EQ(code_of([&] { model->forward({1, 2, 3}, 2); }), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------------------------
// Broken files: every refusal names the file and the tensor
// ---------------------------------------------------------------------------------------------------------------

using Weights = std::vector<std::pair<std::string, Tensor>>;

class BrokenFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("paradit_te_" + std::to_string(getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Every tensor of a fixture file, as host tensors.
  static Weights read_all(const std::string& rel) {
    const SafetensorsFile f = SafetensorsFile::open(fixture(rel));
    Weights w;
    for (const auto& name : f.names()) w.push_back({name, f.get(name)});
    return w;
  }
  std::string write(const std::string& name, const Weights& w) const {
    const std::string p = (dir_ / name).string();
    write_safetensors(p, w);
    return p;
  }
  static Weights without(Weights w, const std::string& name) {
    const size_t n = w.size();
    std::erase_if(w, [&](const auto& kv) { return kv.first == name; });
    EXPECT_EQ(w.size() + 1, n) << name;
    return w;
  }
  // Expects `fn` to throw `code` with a message naming every one of `parts`.
  template <typename Fn>
  static void expect_error(Fn&& fn, StatusCode code, const std::vector<std::string>& parts) {
    std::string what;
    EXPECT_EQ(code_of(fn, &what), code) << what;
    for (const auto& p : parts) EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' not in: " << what;
  }

  fs::path dir_;
};

TEST_F(BrokenFiles, ClipMissingTensor) {
  auto backend = create_cpu_backend();
  const std::string name = "text_model.encoder.layers.1.mlp.fc2.bias";
  const std::string p = write("clip_l.safetensors", without(read_all("clip_l.safetensors"), name));
  expect_error([&] { ClipTextModel::load(*backend, p, fixture("text_encoder")); }, StatusCode::kNotFound, {p, name});
}

TEST_F(BrokenFiles, ClipWrongShape) {
  auto backend = create_cpu_backend();
  Weights w = read_all("clip_l.safetensors");
  const std::string name = "text_model.encoder.layers.0.mlp.fc1.weight";
  for (auto& [k, t] : w)
    if (k == name) t = t.transpose(0, 1);  // [32, 64] where [64, 32] is expected
  const std::string p = write("clip_l.safetensors", w);
  expect_error([&] { ClipTextModel::load(*backend, p, fixture("text_encoder")); }, StatusCode::kCorruptData,
               {p, name, "[32, 64]", "[64, 32]"});
}

TEST_F(BrokenFiles, ClipUnknownTensorInsideTheModel) {
  auto backend = create_cpu_backend();
  Weights w = read_all("clip_l.safetensors");
  const std::string name = "text_model.encoder.layers.0.mlp.fc1.scale_weight";
  w.push_back({name, test::random_host({1}, 1)});
  const std::string p = write("clip_l.safetensors", w);
  expect_error([&] { ClipTextModel::load(*backend, p, fixture("text_encoder")); }, StatusCode::kCorruptData, {p, name});
}

TEST_F(BrokenFiles, ClipWithoutConfigMustBeClipL) {
  auto backend = create_cpu_backend();
  const std::string p = fixture("clip_l.safetensors");
  expect_error([&] { ClipTextModel::load(*backend, p); }, StatusCode::kInvalidArgument, {p, "config_json"});
}

TEST_F(BrokenFiles, TwoClipsInOneFile) {
  auto backend = create_cpu_backend();
  Weights w;
  for (const auto& [k, t] : read_all("clip_l.safetensors")) {
    w.push_back({"text_encoders.clip_l.transformer." + k, t});
    w.push_back({"text_encoders.clip_g.transformer." + k, t});
  }
  const std::string p = write("two.safetensors", w);
  expect_error([&] { ClipTextModel::load(*backend, p, fixture("text_encoder")); }, StatusCode::kCorruptData,
               {p, "text_encoders.clip_l.transformer.text_model.", "text_encoders.clip_g.transformer.text_model."});
}

TEST_F(BrokenFiles, WrongModelKind) {
  auto backend = create_cpu_backend();
  const std::string t5 = fixture("t5xxl_fp16.safetensors"), clip = fixture("clip_l.safetensors");
  expect_error([&] { ClipTextModel::load(*backend, t5, fixture("text_encoder")); }, StatusCode::kCorruptData,
               {t5, "no CLIP text encoder"});
  expect_error([&] { T5Encoder::load(*backend, clip); }, StatusCode::kCorruptData, {clip, "no T5 encoder"});
  expect_error([&] { T5Encoder::load(*backend, (dir_ / "nothing_here").string()); }, StatusCode::kNotFound,
               {"nothing_here"});
}

TEST_F(BrokenFiles, T5MissingTensor) {
  auto backend = create_cpu_backend();
  const std::string name = "encoder.block.1.layer.1.DenseReluDense.wi_1.weight";
  const std::string p = write("t5.safetensors", without(read_all("t5xxl_fp16.safetensors"), name));
  expect_error([&] { T5Encoder::load(*backend, p); }, StatusCode::kNotFound, {p, name});
}

TEST_F(BrokenFiles, T5MissingEmbedding) {
  auto backend = create_cpu_backend();
  const std::string p = write("t5.safetensors", without(read_all("t5xxl_fp16.safetensors"), "shared.weight"));
  expect_error([&] { T5Encoder::load(*backend, p); }, StatusCode::kNotFound,
               {p, "shared.weight", "encoder.embed_tokens.weight"});
}

TEST_F(BrokenFiles, T5ConfigDisagreesWithShapes) {
  auto backend = create_cpu_backend();
  // The folder's config with d_ff 64: wi_0 is [48, 32] in the file.
  std::ifstream in(fixture("text_encoder_2/config.json"));
  std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = cfg.find("\"d_ff\": 48");
  ASSERT_NE(at, std::string::npos);
  cfg.replace(at, 10, "\"d_ff\": 64");
  const std::string p = fixture("t5xxl_fp16.safetensors");
  expect_error([&] { T5Encoder::load(*backend, p, cfg); }, StatusCode::kCorruptData,
               {p, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight", "[48, 32]", "[64, 32]"});
}

TEST_F(BrokenFiles, T5V10Refused) {
  auto backend = create_cpu_backend();
  Weights w;
  for (auto& [k, t] : read_all("t5xxl_fp16.safetensors")) {
    if (k.find("wi_1") != std::string::npos) continue;
    std::string name = k;
    const size_t at = name.find("wi_0");
    if (at != std::string::npos) name.replace(at, 4, "wi");
    w.push_back({name, t});
  }
  const std::string p = write("t5_v10.safetensors", w);
  expect_error([&] { T5Encoder::load(*backend, p); }, StatusCode::kUnimplemented, {p, "v1.0"});
}

}  // namespace
}  // namespace paradit
