// PNG output (8-bit RGB) with text chunks, and a reader for tests and tools.
//
// Generation parameters go in a text chunk keyed "parameters", as AUTOMATIC1111 and stable-diffusion.cpp write
// them, so that image viewers and those tools show them. Text is written as tEXt when it is plain ASCII and as
// uncompressed iTXt (UTF-8) otherwise: tEXt is Latin-1 by definition, so UTF-8 bytes there would be misread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace paradit {

inline constexpr const char* kPngParametersKey = "parameters";

// A text chunk: key of 1–79 printable ASCII characters (no leading, trailing or double spaces, as the PNG
// specification requires), value UTF-8 without NUL bytes.
using PngText = std::pair<std::string, std::string>;

// Writes height rows of width RGB pixels (row-major HWC, 3 bytes a pixel, rgb.size() == width·height·3) and the
// text chunks in order, before the image data. The file appears complete or not at all (written beside it, then
// renamed). Throws kInvalidArgument (sizes, bad key or value) or kIoError, naming the path.
void write_png(const std::string& path, std::span<const uint8_t> rgb, int64_t width, int64_t height,
               const std::vector<PngText>& text = {});

struct PngImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> rgb;   // HWC, 8-bit RGB (other PNG formats converted: palette, gray, 16-bit, alpha dropped)
  std::vector<PngText> text;  // tEXt, zTXt and iTXt chunks in file order

  // The value of the first chunk with this key, or null.
  const std::string* find_text(const std::string& key) const;
};

// Reads any PNG as 8-bit RGB with its text chunks. Throws kNotFound, kIoError or kCorruptData naming the path.
PngImage read_png(const std::string& path);

}  // namespace paradit
