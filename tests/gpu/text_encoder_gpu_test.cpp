// The CLIP text encoder and the T5 encoder on the CUDA backend (bf16) against the CPU backend (fp32 reference): the
// tiny fixtures, and random models with FLUX's real widths (CLIP-L: 768 wide, 12 heads × 64, 77 tokens; T5-XXL:
// d_model 4096, 64 heads × 64, d_ff 10240, 512 tokens) but few layers, written to a temporary file in bf16 so both
// backends read the same weights.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "paradit/io/safetensors.h"
#include "paradit/models/clip_text.h"
#include "paradit/models/t5_encoder.h"
#include "test_util.h"

namespace paradit {
namespace {

namespace fs = std::filesystem;

constexpr double kTol = 2e-2;  // bf16 GPU vs fp32 reference

std::string fixture(const std::string& rel) { return test::fixtures_dir() + "/text_encoders/" + rel; }

std::vector<int32_t> ids_of(const Tensor& t) {
  const Tensor c = test::to_contiguous_f32(t);
  std::vector<int32_t> ids(size_t(c.numel()));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(c.data_as<float>()[i]);
  return ids;
}

TEST(TextEncoderGpu, TinyClipMatchesCpu) {
  PD_REQUIRE_GPU(cuda);
  auto cpu = create_cpu_backend();
  for (const std::string name : {"clip_legacy", "clip_modern"}) {
    const std::string folder = name == "clip_legacy" ? "text_encoder" : "clip_modern";
    const SafetensorsFile io = SafetensorsFile::open(fixture("io_" + name + ".safetensors"));
    const Tensor ids_t = io.get("input_ids");
    const std::vector<int32_t> ids = ids_of(ids_t);
    const ClipTextOutput ref = ClipTextModel::load(*cpu, fixture(folder))->forward(ids, ids_t.size(0));
    const ClipTextOutput got = ClipTextModel::load(*cuda, fixture(folder))->forward(ids, ids_t.size(0));
    EXPECT_LE(test::rel_l2(cuda->download_f32(got.last_hidden_state), cpu->download_f32(ref.last_hidden_state)), kTol)
        << name;
    EXPECT_LE(test::rel_l2(cuda->download_f32(got.pooler_output), cpu->download_f32(ref.pooler_output)), kTol) << name;
  }
}

TEST(TextEncoderGpu, TinyT5MatchesCpu) {
  PD_REQUIRE_GPU(cuda);
  auto cpu = create_cpu_backend();
  const SafetensorsFile io = SafetensorsFile::open(fixture("io_t5.safetensors"));
  auto on_cpu = T5Encoder::load(*cpu, fixture("text_encoder_2"));
  auto on_gpu = T5Encoder::load(*cuda, fixture("text_encoder_2"));
  for (const std::string c : {"short", "long"}) {
    const Tensor ids_t = io.get(c + "_input_ids");
    const std::vector<int32_t> ids = ids_of(ids_t);
    const Tensor ref = cpu->download_f32(on_cpu->forward(ids, ids_t.size(0)));
    const Tensor got = cuda->download_f32(on_gpu->forward(ids, ids_t.size(0)));
    EXPECT_LE(test::rel_l2(got, ref), kTol) << c;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Real widths, random weights
// ---------------------------------------------------------------------------------------------------------------

class RealWidths : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("paradit_te_gpu_" + std::to_string(getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A bf16 host tensor of mean + a uniform law of the given standard deviation (Backend::fill_random on the CPU:
  // fast for hundreds of millions of values). Each tensor gets its own seed.
  Tensor random_bf16(const Shape& shape, float stddev, float mean = 0.0f) {
    Tensor f = cpu_->empty(shape, DType::kF32);
    cpu_->fill_random(f, ++seed_, stddev);
    float* p = f.data_as<float>();
    for (int64_t i = 0; i < f.numel(); ++i) p[i] += mean;
    Tensor b = Tensor::empty(shape, DType::kBF16, cpu_allocator());
    convert_host(b.data(), DType::kBF16, f.data(), DType::kF32, size_t(f.numel()));
    return b;
  }
  Tensor linear_weight(int64_t out, int64_t in, float extra = 1.0f) {
    return random_bf16({out, in}, extra / std::sqrt(float(in)));
  }
  std::string write(const std::string& name, const std::vector<std::pair<std::string, Tensor>>& w) const {
    const std::string p = (dir_ / name).string();
    write_safetensors(p, w);
    return p;
  }

  std::unique_ptr<Backend> cpu_ = create_cpu_backend();
  uint64_t seed_ = 1000;
  fs::path dir_;
};

TEST_F(RealWidths, ClipLMatchesCpu) {
  PD_REQUIRE_GPU(cuda);
  const int64_t D = 768, F = 3072, V = 49408, P = 77;
  const int layers = 2;
  std::vector<std::pair<std::string, Tensor>> w = {
      {"text_model.embeddings.token_embedding.weight", random_bf16({V, D}, 1.0f)},
      {"text_model.embeddings.position_embedding.weight", random_bf16({P, D}, 1.0f)},
      {"text_model.final_layer_norm.weight", random_bf16({D}, 0.1f, 1.0f)},
      {"text_model.final_layer_norm.bias", random_bf16({D}, 0.1f)},
  };
  for (int i = 0; i < layers; ++i) {
    const std::string p = "text_model.encoder.layers." + std::to_string(i) + ".";
    for (const char* n : {"layer_norm1", "layer_norm2"}) {
      w.push_back({p + n + ".weight", random_bf16({D}, 0.1f, 1.0f)});
      w.push_back({p + n + ".bias", random_bf16({D}, 0.1f)});
    }
    for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      w.push_back({p + "self_attn." + n + ".weight", linear_weight(D, D)});
      w.push_back({p + "self_attn." + n + ".bias", random_bf16({D}, 0.1f)});
    }
    w.push_back({p + "mlp.fc1.weight", linear_weight(F, D)});
    w.push_back({p + "mlp.fc1.bias", random_bf16({F}, 0.1f)});
    w.push_back({p + "mlp.fc2.weight", linear_weight(D, F)});
    w.push_back({p + "mlp.fc2.bias", random_bf16({D}, 0.1f)});
  }
  const std::string file = write("clip_l.safetensors", w);
  // CLIP-L's config with fewer layers (a bare file is taken for the full 12-layer CLIP-L).
  const std::string config = R"({"model_type": "clip_text_model", "hidden_size": 768, "intermediate_size": 3072,
      "num_attention_heads": 12, "num_hidden_layers": 2, "max_position_embeddings": 77, "vocab_size": 49408,
      "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "eos_token_id": 2})";

  // Two prompts as the FLUX tokenizer pads them: BOS, words, EOS, then EOS padding.
  std::vector<int32_t> ids;
  for (int b = 0; b < 2; ++b) {
    const int words = b == 0 ? 12 : 75;
    ids.push_back(49406);
    for (int s = 0; s < words; ++s) ids.push_back(int32_t(260 + (s * 7919 + b * 104729) % 49000));
    while (ids.size() < size_t(77 * (b + 1))) ids.push_back(49407);
  }
  const ClipTextOutput ref = ClipTextModel::load(*cpu_, file, config)->forward(ids, 2);
  const ClipTextOutput got = ClipTextModel::load(*cuda, file, config)->forward(ids, 2);
  EXPECT_LE(test::rel_l2(cuda->download_f32(got.last_hidden_state), cpu_->download_f32(ref.last_hidden_state)), kTol);
  EXPECT_LE(test::rel_l2(cuda->download_f32(got.pooler_output), cpu_->download_f32(ref.pooler_output)), kTol);
}

TEST_F(RealWidths, T5XxlMatchesCpu) {
  PD_REQUIRE_GPU(cuda);
  // XXL's widths with one block and a small vocabulary (the embedding is a gather: its size changes nothing).
  const int64_t D = 4096, H = 64, d = 64, I = H * d, F = 10240, V = 1024, S = 512;
  // q and k scaled down so that the unscaled q·k has unit spread, as trained T5 weights keep it.
  const float qk = 1.0f / std::sqrt(std::sqrt(float(d)));
  const std::string p = "encoder.block.0.";
  const std::vector<std::pair<std::string, Tensor>> w = {
      {"shared.weight", random_bf16({V, D}, 1.0f)},
      {p + "layer.0.layer_norm.weight", random_bf16({D}, 0.1f, 1.0f)},
      {p + "layer.0.SelfAttention.q.weight", linear_weight(I, D, qk)},
      {p + "layer.0.SelfAttention.k.weight", linear_weight(I, D, qk)},
      {p + "layer.0.SelfAttention.v.weight", linear_weight(I, D)},
      {p + "layer.0.SelfAttention.o.weight", linear_weight(D, I)},
      {p + "layer.0.SelfAttention.relative_attention_bias.weight", random_bf16({32, H}, 1.0f)},
      {p + "layer.1.layer_norm.weight", random_bf16({D}, 0.1f, 1.0f)},
      {p + "layer.1.DenseReluDense.wi_0.weight", linear_weight(F, D)},
      {p + "layer.1.DenseReluDense.wi_1.weight", linear_weight(F, D)},
      {p + "layer.1.DenseReluDense.wo.weight", linear_weight(D, F)},
      {"encoder.final_layer_norm.weight", random_bf16({D}, 0.1f, 1.0f)},
  };
  const std::string file = write("t5xxl_1block.safetensors", w);

  // One prompt as the FLUX tokenizer pads it: 100 tokens, </s> (1), then padding (0) that is not masked.
  std::vector<int32_t> ids;
  for (int s = 0; s < 100; ++s) ids.push_back(int32_t(2 + (s * 7919) % (V - 2)));
  ids.push_back(1);
  ids.resize(size_t(S), 0);
  auto on_cpu = T5Encoder::load(*cpu_, file);
  EXPECT_EQ(on_cpu->config().d_model, D);
  EXPECT_EQ(on_cpu->config().num_heads, H);
  const Tensor ref = cpu_->download_f32(on_cpu->forward(ids, 1));
  on_cpu.reset();
  const Tensor got = cuda->download_f32(T5Encoder::load(*cuda, file)->forward(ids, 1));
  EXPECT_LE(test::rel_l2(got, ref), kTol);
}

}  // namespace
}  // namespace paradit
