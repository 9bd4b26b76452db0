// PNG: write → read round trips with text chunks, the chunk bytes checked by an independent walker, and errors.
#include "paradit/io/png.h"

#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "paradit/core/status.h"
#include "test_util.h"

namespace paradit {
namespace {

using test::expect_error;

namespace fs = std::filesystem;

class Png : public test::ScratchDirTest {
 protected:
};

std::vector<uint8_t> random_rgb(int64_t w, int64_t h, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> px(size_t(w * h * 3));
  for (auto& v : px) v = uint8_t(rng() & 0xff);
  return px;
}

std::string file_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Chunk {
  std::string type, data;
};

// Walks the chunks of a PNG by the specification (length, type, data, CRC over type+data), independent of libpng.
std::vector<Chunk> chunks(const std::string& bytes) {
  std::vector<Chunk> out;
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  size_t at = 8;
  auto be32 = [&](size_t i) {
    return uint32_t(uint8_t(bytes[i])) << 24 | uint32_t(uint8_t(bytes[i + 1])) << 16 |
           uint32_t(uint8_t(bytes[i + 2])) << 8 | uint32_t(uint8_t(bytes[i + 3]));
  };
  while (at + 12 <= bytes.size()) {
    const uint32_t len = be32(at);
    if (at + 12 + len > bytes.size()) break;
    Chunk c{bytes.substr(at + 4, 4), bytes.substr(at + 8, len)};
    const uint32_t crc = uint32_t(crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + at + 4), len + 4));
    EXPECT_EQ(crc, be32(at + 8 + len)) << "CRC of chunk " << c.type;
    out.push_back(c);
    at += 12 + len;
  }
  EXPECT_EQ(at, bytes.size()) << "trailing bytes after the last chunk";
  return out;
}

TEST_F(Png, RoundTripWithParameters) {
  const int64_t w = 37, h = 23;
  const auto px = random_rgb(w, h, 1);
  const std::string params =
      "a photo of a cat holding a sign\n"
      "Steps: 28, Sampler: Euler (flow matching), CFG scale: 3.5, Seed: 42, Size: 1024x1024, Model: FLUX.1-dev";
  const std::vector<PngText> text = {{kPngParametersKey, params},
                                     {"Software", "paradit"},
                                     {"Comment", "na\xc3\xafve \xe2\x98\x83 UTF-8"}};
  write_png(path("a.png"), px, w, h, text);

  const PngImage img = read_png(path("a.png"));
  EXPECT_EQ(img.width, w);
  EXPECT_EQ(img.height, h);
  EXPECT_EQ(img.rgb, px);
  EXPECT_EQ(img.text, text);
  ASSERT_NE(img.find_text("parameters"), nullptr);
  EXPECT_EQ(*img.find_text("parameters"), params);
  EXPECT_EQ(img.find_text("nothing"), nullptr);

  // The bytes themselves: IHDR 8-bit RGB; ASCII text as tEXt "key\0value", UTF-8 as iTXt, both before IDAT.
  const auto cs = chunks(file_bytes(path("a.png")));
  ASSERT_GE(cs.size(), 5u);
  EXPECT_EQ(cs.front().type, "IHDR");
  EXPECT_EQ(cs.front().data.substr(8, 2), std::string("\x08\x02", 2));  // bit depth 8, colour type 2 (RGB)
  EXPECT_EQ(cs.back().type, "IEND");
  size_t first_idat = cs.size();
  for (size_t i = 0; i < cs.size(); ++i)
    if (cs[i].type == "IDAT" && first_idat == cs.size()) first_idat = i;
  int found = 0;
  for (size_t i = 0; i < cs.size(); ++i) {
    if (cs[i].type == "tEXt" && cs[i].data == std::string("parameters") + '\0' + params) {
      EXPECT_LT(i, first_idat);
      ++found;
    }
    if (cs[i].type == "iTXt" && cs[i].data.rfind(std::string("Comment") + '\0', 0) == 0) {
      // keyword \0 compression-flag 0, method 0, language "" \0, translated keyword "" \0, UTF-8 text
      EXPECT_EQ(cs[i].data, std::string("Comment") + '\0' + '\0' + '\0' + '\0' + '\0' + text[2].second);
      EXPECT_LT(i, first_idat);
      ++found;
    }
  }
  EXPECT_EQ(found, 2);
}

TEST_F(Png, OverwritesAtomicallyAndLeavesNoTemporaries) {
  write_png(path("b.png"), random_rgb(4, 4, 1), 4, 4);
  const auto px = random_rgb(9, 2, 2);
  write_png(path("b.png"), px, 9, 2, {{"parameters", "second"}});
  const PngImage img = read_png(path("b.png"));
  EXPECT_EQ(img.rgb, px);
  EXPECT_EQ(*img.find_text("parameters"), "second");
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 1);
}

TEST_F(Png, LargeImage) {
  const auto px = random_rgb(1024, 768, 3);
  write_png(path("c.png"), px, 1024, 768, {{"parameters", std::string(10000, 'x')}});
  const PngImage img = read_png(path("c.png"));
  EXPECT_EQ(img.width, 1024);
  EXPECT_EQ(img.height, 768);
  EXPECT_EQ(img.rgb, px);
  EXPECT_EQ(img.find_text("parameters")->size(), 10000u);
}

TEST_F(Png, WriteErrorsNameThePath) {
  const auto px = random_rgb(4, 3, 1);
  const std::string p = path("e.png");
  expect_error([&] { write_png(p, px, 4, 4); }, StatusCode::kInvalidArgument, {p, "48 bytes"});
  expect_error([&] { write_png(p, px, 0, 3); }, StatusCode::kInvalidArgument, {p});
  for (const std::string key : {std::string(), std::string(80, 'k'), std::string(" lead"), std::string("trail "),
                                std::string("two  spaces"), std::string("k\xc3\xa9y"), std::string("tab\tkey")})
    expect_error([&] { write_png(p, px, 4, 3, {{key, "v"}}); }, StatusCode::kInvalidArgument, {p, "key"});
  expect_error([&] { write_png(p, px, 4, 3, {{"parameters", std::string("a\0b", 3)}}); },
               StatusCode::kInvalidArgument, {p, "NUL"});
  const std::string nodir = path("no/such/dir/e.png");
  expect_error([&] { write_png(nodir, px, 4, 3); }, StatusCode::kIoError, {nodir});
  EXPECT_FALSE(fs::exists(p));
}

TEST_F(Png, ReadErrorsNameThePath) {
  expect_error([&] { read_png(path("missing.png")); }, StatusCode::kNotFound, {path("missing.png")});
  { std::ofstream(path("text.png")) << "not a png at all"; }
  expect_error([&] { read_png(path("text.png")); }, StatusCode::kCorruptData, {path("text.png")});
  write_png(path("t.png"), random_rgb(64, 64, 4), 64, 64);
  const std::string bytes = file_bytes(path("t.png"));
  { std::ofstream(path("trunc.png"), std::ios::binary) << bytes.substr(0, bytes.size() / 2); }
  expect_error([&] { read_png(path("trunc.png")); }, StatusCode::kCorruptData, {path("trunc.png")});
}

}  // namespace
}  // namespace paradit
