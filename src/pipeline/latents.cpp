// Host latents: counter-based Gaussian noise, FLUX 2×2 packing, init-latents files, image position ids.
#include "paradit/pipeline/latents.h"

#include <algorithm>
#include <cmath>

#include "paradit/core/random.h"
#include "paradit/core/status.h"
#include "paradit/io/safetensors.h"

namespace paradit {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;  // splitmix64's increment: consecutive counters of a stream
constexpr uint64_t kBatchMul = 0xD1B54A32D192ED03ull;  // odd constant separating the streams of images b, b+1

// 53 random bits as a double in [0, 1).
double unit(uint64_t bits) { return double(bits >> 11) * 0x1.0p-53; }

// One element of a host tensor (any dtype) as f32; offsets in elements.
float load(const Tensor& t, int64_t offset) {
  float f;
  const char* p = static_cast<const char*>(t.data()) + offset * int64_t(t.element_size());
  convert_host(&f, DType::kF32, p, t.dtype(), 1);
  return f;
}

int64_t floor_tokens(int64_t pixels, const char* what) {
  PD_REQUIRE(pixels >= kFluxPixelsPerToken, "image ", what, " must be at least ", kFluxPixelsPerToken,
             " pixels, got ", pixels);
  return pixels / kFluxPixelsPerToken;
}

}  // namespace

Shape flux_unpacked_latent_shape(int64_t batch, int64_t height, int64_t width) {
  PD_REQUIRE(batch >= 1, "batch must be at least 1, got ", batch);
  return {batch, kFluxLatentChannels, kFluxPatch * floor_tokens(height, "height"),
          kFluxPatch * floor_tokens(width, "width")};
}

Shape flux_packed_latent_shape(int64_t batch, int64_t height, int64_t width) {
  PD_REQUIRE(batch >= 1, "batch must be at least 1, got ", batch);
  return {batch, floor_tokens(height, "height") * floor_tokens(width, "width"),
          kFluxLatentChannels * kFluxPatch * kFluxPatch};
}

float gaussian_noise_value(uint64_t seed, uint64_t batch_index, uint64_t i) {
  // The stream of image b: mixing the seed first keeps (seed, b) and (seed', b') from sharing a stream when
  // seed' − seed happens to be a multiple of the batch constant.
  const uint64_t stream = splitmix64(splitmix64(seed) + batch_index * kBatchMul);
  const uint64_t pair = i >> 1;
  const uint64_t a = splitmix64(stream + (2 * pair) * kGolden);
  const uint64_t c = splitmix64(stream + (2 * pair + 1) * kGolden);
  const double u1 = 1.0 - unit(a);  // (0, 1]: log(u1) stays finite
  const double u2 = unit(c);
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double theta = 6.283185307179586 * u2;
  return float((i & 1) ? r * std::sin(theta) : r * std::cos(theta));
}

Tensor gaussian_noise(uint64_t seed, int64_t batch_index, const Shape& shape) {
  PD_REQUIRE(batch_index >= 0, "batch index must be non-negative, got ", batch_index);
  Tensor t = Tensor::empty(shape, DType::kF32, cpu_allocator());
  float* p = t.data_as<float>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) p[i] = gaussian_noise_value(seed, uint64_t(batch_index), uint64_t(i));
  return t;
}

Tensor flux_initial_noise(uint64_t seed, int64_t batch, int64_t height, int64_t width) {
  const Shape shape = flux_unpacked_latent_shape(batch, height, width);
  Tensor unpacked = Tensor::empty(shape, DType::kF32, cpu_allocator());
  const Shape one(shape.begin() + 1, shape.end());
  const int64_t per_image = shape_numel(one);
  for (int64_t b = 0; b < batch; ++b) {
    Tensor img = gaussian_noise(seed, b, one);
    std::copy_n(img.data_as<float>(), per_image, unpacked.data_as<float>() + b * per_image);
  }
  return pack_latents(unpacked);
}

Tensor pack_latents(const Tensor& u) {
  PD_REQUIRE(u.defined() && u.device().is_cpu(), "pack_latents takes a host tensor, got ",
             u.defined() ? u.desc() : std::string("an undefined tensor"));
  PD_REQUIRE(u.dim() == 4, "pack_latents takes [B, C, H, W] latents, got ", shape_str(u.shape()));
  const int64_t B = u.size(0), C = u.size(1), H = u.size(2), W = u.size(3);
  PD_REQUIRE(H % 2 == 0 && W % 2 == 0, "latent height and width must be even to pack 2x2, got ",
             shape_str(u.shape()));
  const int64_t h = H / 2, w = W / 2;
  Tensor out = Tensor::empty({B, h * w, 4 * C}, DType::kF32, cpu_allocator());
  float* o = out.data_as<float>();
  // view(B, C, h, 2, w, 2).permute(0, 2, 4, 1, 3, 5): packed[b, r·w + q, c·4 + dy·2 + dx] = u[b, c, 2r+dy, 2q+dx].
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t q = 0; q < w; ++q)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t dy = 0; dy < 2; ++dy)
            for (int64_t dx = 0; dx < 2; ++dx)
              *o++ = load(u, b * u.stride(0) + c * u.stride(1) + (2 * r + dy) * u.stride(2) +
                                 (2 * q + dx) * u.stride(3));
  return out;
}

Tensor unpack_latents(const Tensor& p, int64_t latent_height, int64_t latent_width) {
  PD_REQUIRE(p.defined() && p.device().is_cpu(), "unpack_latents takes a host tensor, got ",
             p.defined() ? p.desc() : std::string("an undefined tensor"));
  PD_REQUIRE(p.dim() == 3, "unpack_latents takes [B, h*w, 4C] latents, got ", shape_str(p.shape()));
  PD_REQUIRE(latent_height > 0 && latent_width > 0 && latent_height % 2 == 0 && latent_width % 2 == 0,
             "latent height and width must be positive and even, got ", latent_height, "x", latent_width);
  const int64_t B = p.size(0), h = latent_height / 2, w = latent_width / 2;
  PD_REQUIRE(p.size(1) == h * w && p.size(2) % 4 == 0, "packed latents ", shape_str(p.shape()),
             " do not fit a ", latent_height, "x", latent_width, " latent (expected [", B, ", ", h * w,
             ", 4*C])");
  const int64_t C = p.size(2) / 4;
  Tensor out = Tensor::empty({B, C, latent_height, latent_width}, DType::kF32, cpu_allocator());
  float* o = out.data_as<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < latent_height; ++y)
        for (int64_t x = 0; x < latent_width; ++x) {
          const int64_t token = (y / 2) * w + x / 2, ch = c * 4 + (y % 2) * 2 + x % 2;
          *o++ = load(p, b * p.stride(0) + token * p.stride(1) + ch * p.stride(2));
        }
  return out;
}

Tensor load_init_latents(const std::string& path, int64_t batch, int64_t height, int64_t width) {
  const Shape unpacked = flux_unpacked_latent_shape(batch, height, width);
  const Shape packed = flux_packed_latent_shape(batch, height, width);
  const SafetensorsFile file = [&] {
    try {
      return SafetensorsFile::open(path);
    } catch (const Error& e) {  // say what the file was for
      throw Error(e.status().code(), "init latents: " + e.status().message());
    }
  }();
  if (!file.contains("latents")) {
    std::string names;
    for (const auto& n : file.names()) names += (names.empty() ? "" : ", ") + n;
    PD_THROW(kNotFound, "init latents file ", path, " has no tensor named 'latents' (it holds: ",
             names.empty() ? std::string("nothing") : names, ")");
  }
  const SafetensorsInfo& info = file.info("latents");
  const std::string expected = "unpacked " + shape_str(unpacked) + " or packed " + shape_str(packed);
  const std::string request = std::to_string(batch) + " image(s) of " + std::to_string(width) + "x" +
                              std::to_string(height) + " (width x height)";
  if (info.shape.size() != 3 && info.shape.size() != 4)
    PD_THROW(kInvalidArgument, "init latents in ", path, " have shape ", shape_str(info.shape), " (rank ",
             info.shape.size(), "); expected ", expected, " for ", request);
  const bool is_packed = info.shape.size() == 3;
  const Shape& want = is_packed ? packed : unpacked;
  if (info.shape != want) {
    const char* what = info.shape[0] != batch ? "batch size differs"
                                              : (is_packed ? "token count or channels differ"
                                                           : "channels or latent size differ");
    PD_THROW(kInvalidArgument, "init latents in ", path, " have shape ", shape_str(info.shape), " but ",
             request, " need ", (is_packed ? "packed " : "unpacked "), shape_str(want), " (", what,
             "; accepted: ", expected, ")");
  }
  if (!info.dtype || (*info.dtype != DType::kF32 && *info.dtype != DType::kBF16 && *info.dtype != DType::kF16))
    PD_THROW(kInvalidArgument, "init latents in ", path, " are stored as ", info.stored_dtype,
             "; save them as F32, BF16 or F16");
  const Tensor t = file.get("latents");
  Tensor out = is_packed ? Tensor::empty(packed, DType::kF32, cpu_allocator()) : pack_latents(t);
  if (is_packed) convert_host(out.data(), DType::kF32, t.data(), t.dtype(), size_t(t.numel()));
  const float* v = out.data_as<float>();
  for (int64_t i = 0; i < out.numel(); ++i)
    if (!std::isfinite(v[i]))
      PD_THROW(kInvalidArgument, "init latents in ", path, " hold a non-finite value (", v[i],
               ") at packed element ", i);
  return out;
}

Tensor image_ids(int64_t h, int64_t w) {
  PD_REQUIRE(h >= 1 && w >= 1, "image token grid must be at least 1x1, got ", h, "x", w);
  Tensor t = Tensor::empty({h * w, 3}, DType::kF32, cpu_allocator());
  float* p = t.data_as<float>();
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < w; ++c) {
      p[(r * w + c) * 3 + 0] = 0.0f;
      p[(r * w + c) * 3 + 1] = float(r);
      p[(r * w + c) * 3 + 2] = float(c);
    }
  return t;
}

}  // namespace paradit
