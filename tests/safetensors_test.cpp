// safetensors: write -> read round trips, hand-made files, sharded indexes, and every way a file can be bad.
#include "paradit/io/safetensors.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "paradit/core/allocator.h"
#include "paradit/core/status.h"
#include "test_util.h"

namespace paradit {
namespace {

using test::expect_error;

namespace fs = std::filesystem;

class Safetensors : public test::ScratchDirTest {
 protected:
};

Tensor convert(const Tensor& f32, DType dt) {
  Tensor t = Tensor::empty(f32.shape(), dt, cpu_allocator());
  convert_host(t.data(), dt, f32.data(), DType::kF32, size_t(f32.numel()));
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// A file written byte by byte: 8-byte length (normally that of header), header, data.
void write_raw(const std::string& path, const std::string& header, const std::vector<uint8_t>& data,
               std::optional<uint64_t> length = std::nullopt) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = length.value_or(header.size());
  for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
  out.write(header.data(), std::streamsize(header.size()));
  out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST_F(Safetensors, RoundTripF32Bf16F16) {
  const Tensor a = test::random_host({3, 5}, 1);
  const Tensor b = convert(test::random_host({7}, 2), DType::kBF16);
  const Tensor c = convert(test::random_host({2, 3, 4}, 3), DType::kF16);
  const Tensor d = convert(test::random_host({4}, 4), DType::kBF16);  // odd count of 2-byte elements before f32s
  write_safetensors(path("rt.safetensors"), {{"layer.a", a}, {"b", b}, {"c.weight", c}, {"d", d}},
                    {{"format", "pt"}, {"note", "paradit test"}});

  Tensor a_back, c_back;
  {
    const SafetensorsFile f = SafetensorsFile::open(path("rt.safetensors"));
    EXPECT_EQ(f.names(), (std::vector<std::string>{"b", "c.weight", "d", "layer.a"}));
    EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "paradit test"}}));
    EXPECT_EQ(f.info("b").stored_dtype, "BF16");
    EXPECT_EQ(f.info("c.weight").dtype, DType::kF16);
    EXPECT_EQ(f.info("layer.a").shape, (Shape{3, 5}));
    EXPECT_TRUE(same_bytes(f.get("b"), b));
    EXPECT_TRUE(same_bytes(f.get("d"), d));
    a_back = f.get("layer.a");
    c_back = f.get("c.weight");
    EXPECT_TRUE(a_back.device().is_cpu());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a_back.data()) % 4, 0u) << "f32 tensor not 4-byte aligned";
  }
  // The file object is gone; the views keep the mapping alive.
  EXPECT_TRUE(same_bytes(a_back, a));
  EXPECT_TRUE(same_bytes(c_back, c));
  EXPECT_EQ(test::max_abs_diff(a_back, a), 0.0);
}

TEST_F(Safetensors, WriterLayoutIsStandard) {
  const Tensor h = convert(test::random_host({3}, 5), DType::kF16);
  const Tensor f = test::random_host({2, 3}, 6);
  write_safetensors(path("w.safetensors"), {{"h", h}, {"f", f}});
  const auto bytes = file_bytes(path("w.safetensors"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  EXPECT_EQ(n % 8, 0u);
  const auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + long(n));
  EXPECT_FALSE(header.contains("__metadata__"));  // none given, none written
  // Packed without gaps, wider dtype first (so the f32 stays aligned after 3 f16s).
  EXPECT_EQ(header["f"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(header["h"]["data_offsets"], nlohmann::json({24, 30}));
  EXPECT_EQ(header["h"]["dtype"], "F16");
  EXPECT_EQ(bytes.size(), 8 + n + 30);
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + n, f.data(), 24), 0);
}

TEST_F(Safetensors, WritesStridedTensorsInRowMajorOrder) {
  const Tensor src = test::random_host({4, 6}, 7);
  const Tensor t = src.transpose(0, 1);  // [6, 4], not contiguous
  ASSERT_FALSE(t.is_contiguous());
  write_safetensors(path("t.safetensors"), {{"t", t}});
  const Tensor back = SafetensorsFile::open(path("t.safetensors")).get("t");
  EXPECT_EQ(back.shape(), (Shape{6, 4}));
  EXPECT_EQ(test::max_abs_diff(back, test::to_contiguous_f32(t)), 0.0);
  EXPECT_EQ(back.data_as<float>()[1], src.data_as<float>()[6]);  // element (0, 1) of the transpose
}

TEST_F(Safetensors, ReadsHandMadeFp8AndScalars) {
  const std::string header = R"({"w":{"dtype":"F8_E4M3","shape":[2,2],"data_offsets":[0,4]},)"
                             R"("s":{"dtype":"F32","shape":[],"data_offsets":[4,8]},"__metadata__":{"k":"v"}})";
  float s = 2.5f;
  std::vector<uint8_t> data = {0x38, 0xb8, 0x7e, 0x40, 0, 0, 0, 0};
  std::memcpy(data.data() + 4, &s, 4);
  write_raw(path("fp8.safetensors"), header, data);
  const SafetensorsFile f = SafetensorsFile::open(path("fp8.safetensors"));
  const Tensor w = f.get("w");
  EXPECT_EQ(w.dtype(), DType::kF8E4M3);
  const Tensor wf = test::to_contiguous_f32(w);
  EXPECT_EQ(wf.data_as<float>()[0], 1.0f);
  EXPECT_EQ(wf.data_as<float>()[1], -1.0f);
  EXPECT_EQ(wf.data_as<float>()[2], 448.0f);
  EXPECT_EQ(wf.data_as<float>()[3], 2.0f);
  // The header was not padded, so this f32 sits at an odd address in the mapping: it is copied, not viewed.
  const Tensor st = f.get("s");
  EXPECT_EQ(st.shape(), Shape{});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(st.data()) % 4, 0u);
  EXPECT_EQ(st.data_as<float>()[0], 2.5f);
  EXPECT_EQ(f.metadata().at("k"), "v");
}

// Two shards behind an index, opened through the index and through the directory.
TEST_F(Safetensors, ShardedIndex) {
  const Tensor a = test::random_host({4, 3}, 11), b = convert(test::random_host({5}, 12), DType::kBF16);
  const Tensor c = test::random_host({2, 2}, 13);
  fs::create_directories(dir_ / "model");
  write_safetensors(path("model/part-1.safetensors"), {{"a", a}, {"b", b}});
  write_safetensors(path("model/part-2.safetensors"), {{"c", c}});
  std::ofstream(path("model/model.safetensors.index.json"))
      << R"({"metadata":{"total_size":70},"weight_map":{"a":"part-1.safetensors","b":"part-1.safetensors",)"
      << R"("c":"part-2.safetensors"}})";
  for (const std::string p : {path("model/model.safetensors.index.json"), path("model")}) {
    const SafetensorsSet set = SafetensorsSet::open(p);
    EXPECT_EQ(set.names(), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(set.files().size(), 2u);
    EXPECT_EQ(fs::path(set.file_of("c")).filename(), "part-2.safetensors");
    EXPECT_TRUE(same_bytes(set.get("a"), a));
    EXPECT_TRUE(same_bytes(set.get("b"), b));
    EXPECT_TRUE(same_bytes(set.get("c"), c));
    EXPECT_EQ(set.info("b").dtype, DType::kBF16);
    expect_error([&] { set.get("d"); }, StatusCode::kNotFound, {"'d'", p});
  }
}

TEST_F(Safetensors, DirectoryWithOneFileAndAmbiguousDirectory) {
  const Tensor a = test::random_host({3}, 21);
  write_safetensors(path("diffusion_pytorch_model.safetensors"), {{"a", a}});
  EXPECT_TRUE(same_bytes(SafetensorsSet::open(dir_.string()).get("a"), a));
  // A variant beside it: the plain diffusers name wins.
  write_safetensors(path("diffusion_pytorch_model.fp16.safetensors"), {{"a", convert(a, DType::kF16)}});
  EXPECT_EQ(SafetensorsSet::open(dir_.string()).info("a").dtype, DType::kF32);
  // Two unrelated files: refused, both named.
  fs::remove(path("diffusion_pytorch_model.safetensors"));
  write_safetensors(path("other.safetensors"), {{"a", a}});
  expect_error([&] { SafetensorsSet::open(dir_.string()); }, StatusCode::kInvalidArgument,
               {dir_.string(), "other.safetensors", "diffusion_pytorch_model.fp16.safetensors"});
  fs::create_directories(dir_ / "empty");
  expect_error([&] { SafetensorsSet::open(path("empty")); }, StatusCode::kNotFound, {path("empty")});
}

TEST_F(Safetensors, MissingFileAndMissingTensor) {
  expect_error([&] { SafetensorsFile::open(path("nope.safetensors")); }, StatusCode::kNotFound,
               {path("nope.safetensors")});
  expect_error([&] { SafetensorsSet::open(path("nope.safetensors.index.json")); }, StatusCode::kNotFound,
               {path("nope.safetensors.index.json")});
  write_safetensors(path("x.safetensors"), {{"x", test::random_host({2}, 31)}});
  const SafetensorsFile f = SafetensorsFile::open(path("x.safetensors"));
  expect_error([&] { f.get("y.weight"); }, StatusCode::kNotFound, {path("x.safetensors"), "y.weight"});
  expect_error([&] { f.info("y.weight"); }, StatusCode::kNotFound, {path("x.safetensors"), "y.weight"});
  EXPECT_FALSE(f.contains("y.weight"));
  EXPECT_TRUE(f.contains("x"));
}

// Cutting a valid file at any length must give kCorruptData, never a crash or a view past the end.
TEST_F(Safetensors, EveryTruncationIsCorruptData) {
  write_safetensors(path("full.safetensors"),
                    {{"first", test::random_host({3, 4}, 41)}, {"second.weight", test::random_host({5}, 42)}});
  const auto bytes = file_bytes(path("full.safetensors"));
  for (size_t len = 0; len < bytes.size(); ++len) {
    {
      std::ofstream out(path("cut.safetensors"), std::ios::binary);
      out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(len));
    }
    const Status st = capture([&] { SafetensorsFile::open(path("cut.safetensors")); });
    ASSERT_EQ(st.code(), StatusCode::kCorruptData) << "length " << len << ": " << st.to_string();
    EXPECT_NE(st.message().find(path("cut.safetensors")), std::string::npos) << st.message();
  }
  // Cut inside the data: the message names the tensor that no longer fits. ("second.weight" is written last:
  // both are f32, so the given order holds.)
  fs::resize_file(path("full.safetensors"), bytes.size() - 4);
  expect_error([&] { SafetensorsFile::open(path("full.safetensors")); }, StatusCode::kCorruptData,
               {path("full.safetensors"), "second.weight", "truncated"});
}

TEST_F(Safetensors, HeaderLengthBeyondFile) {
  write_raw(path("h.safetensors"), R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", {1, 2, 3, 4},
            uint64_t(1) << 40);
  expect_error([&] { SafetensorsFile::open(path("h.safetensors")); }, StatusCode::kCorruptData,
               {path("h.safetensors"), "header length 1099511627776"});
}

TEST_F(Safetensors, BadJsonAndBadStructure) {
  write_raw(path("j.safetensors"), R"({"a":{"dtype":"F32",)", {});
  expect_error([&] { SafetensorsFile::open(path("j.safetensors")); }, StatusCode::kCorruptData,
               {path("j.safetensors"), "not valid JSON"});
  write_raw(path("arr.safetensors"), "[1,2]", {});
  expect_error([&] { SafetensorsFile::open(path("arr.safetensors")); }, StatusCode::kCorruptData,
               {path("arr.safetensors"), "not a JSON object"});
  write_raw(path("nofield.safetensors"), R"({"w.bias":{"dtype":"F32","shape":[1]}})", {0, 0, 0x80, 0x3f});
  expect_error([&] { SafetensorsFile::open(path("nofield.safetensors")); }, StatusCode::kCorruptData,
               {path("nofield.safetensors"), "w.bias", "data_offsets"});
  write_raw(path("neg.safetensors"), R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", {1, 2, 3, 4});
  expect_error([&] { SafetensorsFile::open(path("neg.safetensors")); }, StatusCode::kCorruptData,
               {path("neg.safetensors"), "'w'", "shape"});
  write_raw(path("order.safetensors"), R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", {1, 2, 3, 4});
  expect_error([&] { SafetensorsFile::open(path("order.safetensors")); }, StatusCode::kCorruptData,
               {path("order.safetensors"), "'w'", "out of order"});
  write_raw(path("meta.safetensors"), R"({"__metadata__":{"n":3}})", {});
  expect_error([&] { SafetensorsFile::open(path("meta.safetensors")); }, StatusCode::kCorruptData,
               {path("meta.safetensors"), "__metadata__", "'n'"});
  write_raw(path("huge.safetensors"), R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,0]}})",
            {});
  expect_error([&] { SafetensorsFile::open(path("huge.safetensors")); }, StatusCode::kCorruptData,
               {path("huge.safetensors"), "'w'", "too large"});
}

TEST_F(Safetensors, WrongByteSize) {
  write_raw(path("b.safetensors"), R"({"w.weight":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,8]}})",
            std::vector<uint8_t>(8, 7));
  expect_error([&] { SafetensorsFile::open(path("b.safetensors")); }, StatusCode::kCorruptData,
               {path("b.safetensors"), "w.weight", "8 bytes", "needs 12"});
}

TEST_F(Safetensors, OverlappingTensors) {
  write_raw(
      path("o.safetensors"),
      R"({"p":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"q":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      std::vector<uint8_t>(12, 1));
  expect_error([&] { SafetensorsFile::open(path("o.safetensors")); }, StatusCode::kCorruptData,
               {path("o.safetensors"), "'p'", "'q'", "overlap"});
}

TEST_F(Safetensors, UnknownAndUnsupportedDtypes) {
  write_raw(path("q.safetensors"), R"({"w":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}})", {1, 2});
  expect_error([&] { SafetensorsFile::open(path("q.safetensors")); }, StatusCode::kCorruptData,
               {path("q.safetensors"), "'w'", "Q4_K"});
  // A known format dtype paradit has no use for (CLIP files carry I64 position ids): the file opens, the
  // other tensors read, and only that tensor is refused.
  std::vector<uint8_t> data(20, 0);
  const float x[3] = {1.5f, -2.0f, 0.25f};
  std::memcpy(data.data() + 8, x, 12);
  write_raw(path("i64.safetensors"),
            R"({"position_ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
            R"("x":{"dtype":"F32","shape":[3],"data_offsets":[8,20]}})",
            data);
  const SafetensorsFile f = SafetensorsFile::open(path("i64.safetensors"));
  EXPECT_EQ(f.info("position_ids").stored_dtype, "I64");
  EXPECT_FALSE(f.info("position_ids").dtype.has_value());
  EXPECT_EQ(f.get("x").data_as<float>()[1], -2.0f);
  expect_error([&] { f.get("position_ids"); }, StatusCode::kUnimplemented,
               {path("i64.safetensors"), "position_ids", "unsupported dtype I64"});
}

TEST_F(Safetensors, ShardMissingOrWrong) {
  fs::create_directories(dir_ / "m");
  write_safetensors(path("m/s1.safetensors"), {{"a", test::random_host({2}, 51)}});
  std::ofstream(path("m/model.safetensors.index.json"))
      << R"({"weight_map":{"a":"s1.safetensors","b.weight":"s2.safetensors"}})";
  expect_error([&] { SafetensorsSet::open(path("m")); }, StatusCode::kNotFound,
               {path("m/s2.safetensors"), "b.weight", "model.safetensors.index.json"});
  std::ofstream(path("m/model.safetensors.index.json"))
      << R"({"weight_map":{"a":"s1.safetensors","b.weight":"s1.safetensors"}})";
  expect_error([&] { SafetensorsSet::open(path("m")); }, StatusCode::kCorruptData,
               {path("m/s1.safetensors"), "b.weight", "does not hold it"});
  std::ofstream(path("m/model.safetensors.index.json")) << R"({"weight_map":["a"]})";
  expect_error([&] { SafetensorsSet::open(path("m")); }, StatusCode::kCorruptData,
               {path("m/model.safetensors.index.json"), "weight_map"});
  std::ofstream(path("m/model.safetensors.index.json")) << "{{";
  expect_error([&] { SafetensorsSet::open(path("m")); }, StatusCode::kCorruptData,
               {path("m/model.safetensors.index.json"), "not valid JSON"});
}

// Random damage to the header: every outcome is a clean Error or a file that opens; nothing crashes.
TEST_F(Safetensors, RandomHeaderDamageNeverCrashes) {
  write_safetensors(
      path("ok.safetensors"),
      {{"alpha", test::random_host({3, 2}, 61)}, {"beta", convert(test::random_host({4}, 62), DType::kF16)}},
      {{"format", "pt"}});
  const auto good = file_bytes(path("ok.safetensors"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | good[i];
  std::mt19937 rng(7);
  int errors = 0;
  for (int trial = 0; trial < 300; ++trial) {
    auto bad = good;
    const int hits = 1 + int(rng() % 3);
    for (int h = 0; h < hits; ++h) bad[rng() % (8 + n)] = uint8_t(rng());
    {
      std::ofstream out(path("bad.safetensors"), std::ios::binary);
      out.write(reinterpret_cast<const char*>(bad.data()), std::streamsize(bad.size()));
    }
    const Status st = capture([&] {
      const SafetensorsFile f = SafetensorsFile::open(path("bad.safetensors"));
      for (const auto& name : f.names()) {
        const Tensor t = f.get(name);
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ static_cast<const uint8_t*>(t.data())[i];
      }
    });
    if (!st.ok()) {
      ++errors;
      EXPECT_TRUE(st.code() == StatusCode::kCorruptData || st.code() == StatusCode::kUnimplemented ||
                  st.code() == StatusCode::kNotFound)
          << st.to_string();
      EXPECT_NE(st.message().find(path("bad.safetensors")), std::string::npos) << st.message();
    }
  }
  EXPECT_GT(errors, 100);  // most damage must be noticed
}

TEST_F(Safetensors, WriteErrors) {
  const Tensor a = test::random_host({2}, 71);
  expect_error(
      [&] {
        write_safetensors(path("d.safetensors"), {{"a", a}, {"a", a}});
      },
      StatusCode::kInvalidArgument, {path("d.safetensors"), "'a'"});
  expect_error(
      [&] {
        write_safetensors(path("m.safetensors"), {{"__metadata__", a}});
      },
      StatusCode::kInvalidArgument, {path("m.safetensors"), "__metadata__"});
  expect_error(
      [&] {
        write_safetensors(path("no/such/dir/x.safetensors"), {{"a", a}});
      },
      StatusCode::kIoError, {path("no/such/dir/x.safetensors")});
  EXPECT_FALSE(fs::exists(path("d.safetensors")));
  // A failed write leaves no temporary behind.
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 0u);
}

}  // namespace
}  // namespace paradit
