// `paradit generate` as users run it: the built binary (PARADIT_CLI, set by tests/CMakeLists.txt) on the embedded
// tiny-flux pipeline. PNGs with their parameters text, batches, --json, --init-latents against diffusers, and bad
// flags: a clear message and a non-zero exit status, never a crash.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "paradit/io/png.h"
#include "paradit/io/safetensors.h"
#include "test_util.h"

namespace paradit {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  bool exited = false;  // false: killed by a signal (a crash)
  int rc = -1;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("paradit_cli_test_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `paradit generate ARGS` in the test's folder.
  CliRun generate(const std::vector<std::string>& args) const { return run("generate", args); }
  // Runs `paradit COMMAND ARGS` there.
  CliRun run(const std::string& command, const std::vector<std::string>& args) const {
    std::string cmd = "cd " + quote(dir_.string()) + " && " + quote(PARADIT_CLI) + " " + command;
    for (const auto& a : args) cmd += " " + quote(a);
    cmd += " > out.txt 2> err.txt";
    const int status = std::system(cmd.c_str());
    CliRun r;
    r.exited = WIFEXITED(status);
    r.rc = r.exited ? WEXITSTATUS(status) : -1;
    r.out = slurp(dir_ / "out.txt");
    r.err = slurp(dir_ / "err.txt");
    return r;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // The pixels of a 48×32, 2-step image of the embedded default on CPU ranks with the extra flags, written to
  // `out`.
  std::vector<uint8_t> small_image(const std::vector<std::string>& flags, const std::string& out) const {
    std::vector<std::string> args = {"-p", "a tree", "-W", "48", "-H", "32", "--steps", "2", "-q", "--device", "cpu",
                                     "-o", out};
    args.insert(args.end(), flags.begin(), flags.end());
    const CliRun r = generate(args);
    EXPECT_TRUE(r.exited && r.rc == 0) << r.err;
    return read_png(path(out)).rgb;
  }

  fs::path dir_;
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST_F(CliTest, EmbeddedDefaultWritesAPngWithItsParameters) {
  const CliRun r = generate({"-p", "a cat", "-o", "out.png"});  // the command, FluxPipeline's defaults
  ASSERT_TRUE(r.exited && r.rc == 0) << r.err;
  EXPECT_TRUE(contains(r.err, "random")) << "the embedded model must say it is random: " << r.err;
  EXPECT_TRUE(contains(r.out, "wrote out.png (1024x1024, seed 42)")) << r.out;
  const PngImage png = read_png(path("out.png"));
  EXPECT_EQ(png.width, 1024);
  EXPECT_EQ(png.height, 1024);
  const std::string* params = png.find_text(kPngParametersKey);
  ASSERT_NE(params, nullptr);
  for (const char* part : {"a cat\n", "Steps: 28", "Guidance: 3.5", "Seed: 42", "Size: 1024x1024", "tiny-flux",
                           "Max sequence length: 512"})
    EXPECT_TRUE(contains(*params, part)) << part << " not in: " << *params;
  EXPECT_FALSE(contains(*params, "Negative prompt"));
  // Noise of a random model, but not a constant image.
  EXPECT_GT(*std::max_element(png.rgb.begin(), png.rgb.end()), *std::min_element(png.rgb.begin(), png.rgb.end()));
}

TEST_F(CliTest, BatchIsNumberedAndJsonSummarises) {
  const CliRun r = generate({"-p", "a lighthouse", "-n", "fog", "--cfg-scale", "2.5", "-W", "32", "-H", "48",
                          "--steps", "2", "-b", "2", "-s", "7", "-o", "img.png", "--json"});
  ASSERT_TRUE(r.exited && r.rc == 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);  // stdout holds the JSON object only
  EXPECT_EQ(j["seeds"], nlohmann::json({7, 8}));
  EXPECT_EQ(j["outputs"], nlohmann::json({"img_1.png", "img_2.png"}));
  EXPECT_EQ(j["steps"], 2);
  EXPECT_EQ(j["negative_prompt"], "fog");
  EXPECT_EQ(j["variant"], "dev");
  for (const char* stage : {"load_s", "encode_s", "denoise_s", "decode_s", "write_s", "total_s"})
    EXPECT_TRUE(j["timings"][stage].is_number()) << stage;
  EXPECT_EQ(j["timings"]["step_s"].size(), 4u);
  ASSERT_EQ(j["memory"].size(), 1u);
  EXPECT_GT(j["memory"][0]["transformer_weight_bytes"].get<int64_t>(), 0);
  for (int i = 1; i <= 2; ++i) {
    const PngImage png = read_png(path("img_" + std::to_string(i) + ".png"));
    EXPECT_EQ(png.width, 32);
    EXPECT_EQ(png.height, 48);
    const std::string params = *png.find_text(kPngParametersKey);
    EXPECT_TRUE(contains(params, "Negative prompt: fog\n")) << params;
    EXPECT_TRUE(contains(params, "CFG scale: 2.5")) << params;
    EXPECT_TRUE(contains(params, "Seed: " + std::to_string(6 + i))) << params;
  }
}

TEST_F(CliTest, TensorParallelReportsMemoryPerRank) {
  const CliRun one = generate({"-p", "a boat", "-W", "32", "-H", "32", "--steps", "1", "--device", "cpu",
                               "-o", "one.png", "--json"});
  const CliRun tp = generate({"-p", "a boat", "-W", "32", "-H", "32", "--steps", "1", "--device", "cpu", "--tp",
                              "2", "--threads-per-rank", "1", "-o", "tp.png", "--json"});
  ASSERT_TRUE(one.exited && one.rc == 0) << one.err;
  ASSERT_TRUE(tp.exited && tp.rc == 0) << tp.err;
  const nlohmann::json a = nlohmann::json::parse(one.out), b = nlohmann::json::parse(tp.out);
  EXPECT_TRUE(contains(b["device"].get<std::string>(), "--tp 2")) << b["device"];
  ASSERT_EQ(b["memory"].size(), 2u);
  const int64_t whole = a["memory"][0]["transformer_weight_bytes"].get<int64_t>();
  for (const auto& m : b["memory"]) {
    EXPECT_LT(m["transformer_weight_bytes"].get<int64_t>(), whole) << m;
    EXPECT_TRUE(m["peak_bytes"].is_null()) << m;  // CPU ranks cannot tell
  }
  // The same image (1/255) as one device.
  const auto x = read_png(path("one.png")).rgb, y = read_png(path("tp.png")).rgb;
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_LE(std::abs(int(x[i]) - int(y[i])), 1) << i;
}

TEST_F(CliTest, SameSeedSameImage) {
  const std::vector<std::string> common = {"-p", "a tree", "-W", "32", "-H", "32", "--steps", "2", "-q"};
  auto with = [&](const std::string& seed, const std::string& out) {
    std::vector<std::string> a = common;
    a.insert(a.end(), {"-s", seed, "-o", out});
    const CliRun r = generate(a);
    EXPECT_TRUE(r.exited && r.rc == 0) << r.err;
    EXPECT_TRUE(r.out.empty()) << "--quiet prints nothing: " << r.out;
    EXPECT_FALSE(contains(r.err, "[paradit info]")) << r.err;
    return read_png(path(out)).rgb;
  };
  const auto a = with("5", "a.png"), b = with("5", "b.png"), c = with("6", "c.png");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST_F(CliTest, UlyssesHeadChunksGiveTheSameImage) {
  // tiny-flux's 3 heads over Ulysses 3 in 1 or 2 chunks (one empty on every rank): the same attention per head.
  EXPECT_EQ(small_image({"--ulysses", "3", "--ulysses-chunks", "1"}, "one.png"),
            small_image({"--ulysses", "3", "--ulysses-chunks", "2"}, "two.png"));
}

TEST_F(CliTest, RingKvGatherGivesThePassImage) {
  // Ring 3 over tiny-flux's uneven blocks, K/V passed round or gathered at once: the same keys, merged in another
  // order (f32 rounding at most).
  const std::vector<uint8_t> pass = small_image({"--ring", "3", "--ring-kv", "pass"}, "pass.png"),
                             gather = small_image({"--ring", "3", "--ring-kv", "gather"}, "gather.png");
  ASSERT_EQ(pass.size(), gather.size());
  int worst = 0;
  for (size_t i = 0; i < pass.size(); ++i) worst = std::max(worst, std::abs(int(pass[i]) - int(gather[i])));
  EXPECT_LE(worst, 1);
}

TEST_F(CliTest, InitLatentsReproduceDiffusersFromTheFolderAndFromSingleFiles) {
  const std::string fixtures = test::fixtures_dir() + "/pipeline/";
  const std::string model = test::fixtures_dir() + "/../../models/tiny-flux";
  const SafetensorsFile f = SafetensorsFile::open(fixtures + "base.safetensors");
  const nlohmann::json args = nlohmann::json::parse(f.metadata().at("case"));
  const Tensor expected = test::to_contiguous_f32(f.get("image"));
  const std::vector<std::vector<std::string>> sources = {
      {},  // the embedded default, which is the fixture's folder
      {"--diffusion-model", fixtures + "flux1-tiny.safetensors", "--vae", fixtures + "ae.safetensors", "--clip_l",
       fixtures + "clip_l.safetensors", "--t5xxl", fixtures + "t5xxl_fp16.safetensors", "--clip-tokenizer",
       model + "/tokenizer", "--t5-tokenizer", model + "/tokenizer_2/spiece.model", "--config-dir", model},
  };
  for (const auto& source : sources) {
    std::vector<std::string> a = {"-p", args["prompt"], "-W", "64", "-H", "48", "--steps", "4", "--init-latents",
                                  fixtures + "base.safetensors", "-o", "base.png"};
    a.insert(a.end(), source.begin(), source.end());
    const CliRun r = generate(a);
    ASSERT_TRUE(r.exited && r.rc == 0) << r.err;
    const PngImage png = read_png(path("base.png"));
    ASSERT_EQ(int64_t(png.rgb.size()), expected.numel());
    int worst = 0;
    for (size_t i = 0; i < png.rgb.size(); ++i)
      worst = std::max(worst, std::abs(int(png.rgb[i]) - int(expected.data_as<float>()[i])));
    EXPECT_LE(worst, 1) << (source.empty() ? "folder" : "single files");
    EXPECT_TRUE(contains(*png.find_text(kPngParametersKey), "Init latents: " + fixtures + "base.safetensors"));
  }
}

TEST_F(CliTest, BenchPipelineProfileReportsTimePerRegion) {
  const std::vector<std::string> common = {"--tiny", "--device", "cpu", "--size", "64", "--steps", "2", "--iters",
                                           "1", "--warmup", "0", "--json"};
  const CliRun plain = run("bench pipeline", common);
  ASSERT_TRUE(plain.exited && plain.rc == 0) << plain.err;
  EXPECT_FALSE(nlohmann::json::parse(plain.out).contains("regions_ms_per_step")) << plain.out;
  for (const std::vector<std::string> mesh : {std::vector<std::string>{}, {"--ulysses", "2"}}) {
    std::vector<std::string> args = common;
    args.insert(args.end(), mesh.begin(), mesh.end());
    args.push_back("--profile");
    const CliRun r = run("bench pipeline", args);
    ASSERT_TRUE(r.exited && r.rc == 0) << r.err;
    const nlohmann::json regions = nlohmann::json::parse(r.out)["regions_ms_per_step"];
    for (const char* name : {"encode", "embeddings, RoPE tables", "QKV GEMMs", "q/k RMSNorm + RoPE",
                             "attention (+ SP transfers)", "MLP-in GEMMs (+ GELU)", "out GEMMs (+ TP all-reduce)",
                             "final layer", "decode: latents", "decode: image download, 8-bit"}) {
      ASSERT_TRUE(regions.contains(name)) << name << " missing from " << regions;
      EXPECT_GE(regions[name].get<double>(), 0.0) << name;
    }
    EXPECT_GT(regions["attention (+ SP transfers)"].get<double>(), 0.0);
    EXPECT_TRUE(contains(r.err, "| attention (+ SP transfers) |")) << r.err;
  }
}

TEST_F(CliTest, HelpListsTheOptions) {
  const CliRun r = generate({"--help"});
  ASSERT_TRUE(r.exited && r.rc == 0);
  for (const char* flag : {"--prompt", "--negative-prompt", "--cfg-scale", "--guidance", "--steps", "--seed", "--width",
                           "--height", "--batch-count", "--max-sequence-length", "--output", "--model",
                           "--diffusion-model", "--vae", "--clip_l", "--t5xxl", "--clip-tokenizer", "--t5-tokenizer",
                           "--init-latents", "--config-dir", "--device", "--dtype", "--quiet", "--json", "--tp"})
    EXPECT_TRUE(contains(r.out, flag)) << flag;
}

TEST_F(CliTest, BadFlagsExitNonZeroWithAClearMessage) {
  const std::string base = test::fixtures_dir() + "/pipeline/base.safetensors";
  struct Bad {
    std::vector<std::string> args;
    int rc;
    std::vector<std::string> message;
  };
  const std::vector<Bad> cases = {
      {{"-p", "x", "-W", "100"}, 2, {"width 100", "multiple of 16", "try 96 or 112"}},
      {{"-p", "x", "-H", "8"}, 2, {"height 8", "multiple of 16"}},
      {{"-p", "x", "--bogus"}, 2, {"unknown option '--bogus'"}},
      {{"-p", "x", "--steps", "many"}, 2, {"--steps expects an integer"}},
      {{"-p", "x", "-s", "1.5"}, 2, {"--seed expects an integer"}},
      {{"-p"}, 2, {"--prompt needs a value"}},
      {{"-W", "64"}, 2, {"needs a prompt"}},
      {{"-p", "x", "--max-sequence-length", "600"}, 2, {"1..512"}},
      {{"-p", "x", "-b", "0"}, 2, {"--batch-count"}},
      {{"-p", "x", "--ulysses-chunks", "0"}, 2, {"--ulysses-chunks must be >= 1"}},
      {{"-p", "x", "--ring-kv", "hops"}, 2, {"--ring-kv must be pass, gather or auto", "'hops'"}},
      {{"-p", "x", "--device", "tpu"}, 2, {"bad device 'tpu'"}},
      {{"-p", "x", "--dtype", "f8"}, 2, {"--dtype must be"}},
      {{"-p", "x", "--model", "/nonexistent/flux"}, 2, {"/nonexistent/flux is not a folder"}},
      {{"-p", "x", "--vae", "/nonexistent/ae.safetensors"},
       1,
       {"incomplete FLUX.1 pipeline", "--vae: no such file", "--diffusion-model", "--t5-tokenizer"}},
      {{"-p", "x", "--init-latents", "/nonexistent/latents.safetensors"}, 1, {"init latents", "/nonexistent"}},
      {{"-p", "x", "-W", "64", "-H", "48", "-b", "2", "--init-latents", base}, 2, {"batch size differs"}},
  };
  for (const Bad& c : cases) {
    const CliRun r = generate(c.args);
    std::string shown;
    for (const auto& a : c.args) shown += a + " ";
    EXPECT_TRUE(r.exited) << shown << "crashed";
    EXPECT_EQ(r.rc, c.rc) << shown << "\n" << r.err;
    for (const auto& m : c.message) EXPECT_TRUE(contains(r.err, m)) << shown << ": '" << m << "' not in: " << r.err;
    EXPECT_TRUE(r.out.empty()) << shown << r.out;
  }
}

}  // namespace
}  // namespace paradit
