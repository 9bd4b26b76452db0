// PNG through libpng: an RGB writer with text chunks, and a reader (tests, tools).
//
// libpng reports errors by longjmp to a setjmp point. A longjmp skips destructors of the frames it crosses,
// so each libpng session runs in a function (encode/decode below) whose own locals are all trivially
// destructible; everything with a destructor lives in the caller and outlives the jump. The error text is
// carried out in the job struct and turned into a paradit::Error once libpng is off the stack.
#include <png.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "paradit/core/status.h"
#include "paradit/io/png.h"

namespace paradit {
namespace {

struct Job {
  FILE* file = nullptr;
  char error[512] = {0};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* job = static_cast<Job*>(png_get_error_ptr(png));
  std::snprintf(job->error, sizeof(job->error), "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // benign (e.g. unknown chunks): not worth a message

struct WriteJob : Job {
  const uint8_t* rgb = nullptr;
  png_uint_32 width = 0, height = 0;
  png_text* text = nullptr;
  int num_text = 0;
};

// One libpng write session; false with job->error set on failure.
bool encode(WriteJob* job) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, job, on_error, on_warning);
  if (!png) {
    std::snprintf(job->error, sizeof(job->error), "libpng could not start a writer");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(job->error, sizeof(job->error), "libpng could not allocate its header");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, job->file);
  png_set_IHDR(png, info, job->width, job->height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (job->num_text > 0) png_set_text(png, info, job->text, job->num_text);
  png_write_info(png, info);
  const size_t stride = size_t(job->width) * 3;
  for (png_uint_32 y = 0; y < job->height; ++y) png_write_row(png, job->rgb + size_t(y) * stride);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

struct ReadJob : Job {
  PngImage* out = nullptr;
};

// Copies what libpng holds into job->out (may throw bad_alloc: libpng is not on the stack then).
void collect_text(png_structp png, png_infop info, PngImage* out) {
  png_textp text = nullptr;
  int n = 0;
  png_get_text(png, info, &text, &n);
  for (int i = 0; i < n; ++i) {
    const size_t len = text[i].compression > 0 ? text[i].itxt_length : text[i].text_length;
    out->text.emplace_back(text[i].key, std::string(text[i].text ? text[i].text : "", len));
  }
}

bool decode(ReadJob* job) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, on_error, on_warning);
  if (!png) {
    std::snprintf(job->error, sizeof(job->error), "libpng could not start a reader");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(job->error, sizeof(job->error), "libpng could not allocate its header");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_init_io(png, job->file);
  png_read_info(png, info);
  // Whatever the stored format, deliver 8-bit RGB.
  png_set_expand(png);
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  const size_t stride = png_get_rowbytes(png, info);
  if (stride != size_t(w) * 3) {
    std::snprintf(job->error, sizeof(job->error), "unexpected row size %zu for width %u", stride, unsigned(w));
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  try {
    job->out->width = w;
    job->out->height = h;
    job->out->rgb.assign(size_t(w) * h * 3, 0);
  } catch (...) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw;
  }
  for (int pass = 0; pass < passes; ++pass)
    for (png_uint_32 y = 0; y < h; ++y) png_read_row(png, job->out->rgb.data() + size_t(y) * stride, nullptr);
  png_read_end(png, info);  // text chunks after the image data land in info too
  try {
    collect_text(png, info, job->out);
  } catch (...) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw;
  }
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

bool is_ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

void check_text(const PngText& kv, const std::string& path) {
  const std::string& key = kv.first;
  bool ok = !key.empty() && key.size() <= 79 && key.front() != ' ' && key.back() != ' ' &&
            key.find("  ") == std::string::npos;
  for (unsigned char c : key) ok = ok && c >= 0x20 && c <= 0x7e;
  PD_REQUIRE(ok, "PNG text key '", key, "' for ", path,
             " must be 1-79 printable ASCII characters without leading, trailing or double spaces");
  PD_REQUIRE(kv.second.find('\0') == std::string::npos, "PNG text '", key, "' for ", path,
             " contains a NUL byte");
}

std::atomic<uint64_t> temp_counter{0};

}  // namespace

void write_png(const std::string& path, std::span<const uint8_t> rgb, int64_t width, int64_t height,
               const std::vector<PngText>& text) {
  // libpng's default limit is 1,000,000 pixels a side; the format allows 2^31 − 1.
  PD_REQUIRE(width >= 1 && height >= 1 && width <= 1000000 && height <= 1000000, "cannot write a ", width, "x",
             height, " PNG to ", path);
  PD_REQUIRE(rgb.size() == size_t(width) * size_t(height) * 3, "PNG ", path, ": ", width, "x", height,
             " RGB needs ", size_t(width) * size_t(height) * 3, " bytes, got ", rgb.size());
  for (const auto& kv : text) check_text(kv, path);

  // libpng takes char* (not const) but only reads these.
  std::vector<std::string> keys, values;
  keys.reserve(text.size());
  values.reserve(text.size());
  std::vector<png_text> chunks(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    keys.push_back(text[i].first);
    values.push_back(text[i].second);
    png_text& c = chunks[i];
    std::memset(&c, 0, sizeof(c));
    c.key = keys.back().data();
    c.text = values.back().data();
    if (is_ascii(values.back())) {
      c.compression = PNG_TEXT_COMPRESSION_NONE;  // tEXt
      c.text_length = values.back().size();
    } else {
      c.compression = PNG_ITXT_COMPRESSION_NONE;  // iTXt, UTF-8
      c.itxt_length = values.back().size();
      c.lang = nullptr;
      c.lang_key = nullptr;
    }
  }

  const std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(temp_counter++);
  WriteJob job;
  job.file = std::fopen(tmp.c_str(), "wb");
  if (!job.file) PD_THROW(kIoError, "cannot create ", tmp, " (writing ", path, "): ", std::strerror(errno));
  job.rgb = rgb.data();
  job.width = png_uint_32(width);
  job.height = png_uint_32(height);
  job.text = chunks.data();
  job.num_text = int(chunks.size());
  const bool ok = encode(&job);
  const int write_errno = std::ferror(job.file) ? errno : 0;
  const bool closed = std::fclose(job.file) == 0;
  const int close_errno = errno;
  if (!ok || write_errno || !closed) {
    std::remove(tmp.c_str());
    if (!ok && !write_errno) PD_THROW(kIoError, "cannot write PNG ", path, ": ", job.error);
    PD_THROW(kIoError, "cannot write PNG ", path, ": ", std::strerror(write_errno ? write_errno : close_errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    PD_THROW(kIoError, "cannot rename ", tmp, " to ", path, ": ", std::strerror(err));
  }
}

const std::string* PngImage::find_text(const std::string& key) const {
  for (const auto& kv : text)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

PngImage read_png(const std::string& path) {
  ReadJob job;
  job.file = std::fopen(path.c_str(), "rb");
  if (!job.file) {
    const int err = errno;
    if (err == ENOENT) PD_THROW(kNotFound, "PNG ", path, " not found");
    PD_THROW(kIoError, "cannot open PNG ", path, ": ", std::strerror(err));
  }
  unsigned char sig[8] = {0};
  const size_t got = std::fread(sig, 1, 8, job.file);
  if (got != 8 || png_sig_cmp(sig, 0, 8) != 0) {
    std::fclose(job.file);
    PD_THROW(kCorruptData, path, " is not a PNG file (bad signature)");
  }
  std::rewind(job.file);
  PngImage img;
  job.out = &img;
  bool ok = false;
  try {
    ok = decode(&job);
  } catch (...) {
    std::fclose(job.file);
    throw;
  }
  std::fclose(job.file);
  if (!ok) PD_THROW(kCorruptData, "cannot read PNG ", path, ": ", job.error);
  return img;
}

}  // namespace paradit
