#include "test_util.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <cstdlib>
#include <limits>
#include <random>

namespace paradit::test {

Tensor random_host(const Shape& shape, uint64_t seed, float stddev) {
  Tensor t = Tensor::empty(shape, DType::kF32, cpu_allocator());
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    float v = dist(rng);
    p[i] = v == 0.0f ? stddev * 1e-3f : v;
  }
  return t;
}

Tensor poisoned_host(const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::kF32, cpu_allocator());
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = std::numeric_limits<float>::quiet_NaN();
  return t;
}

namespace {
// Visits every element of a host tensor in row-major order, giving its value as f32.
template <typename Fn>
void for_each_f32(const Tensor& t, Fn&& fn) {
  const int n = t.dim();
  std::vector<int64_t> idx(n, 0);
  const int64_t total = t.numel();
  const char* base = static_cast<const char*>(t.data());
  const size_t es = t.element_size();
  for (int64_t i = 0; i < total; ++i) {
    int64_t off = 0;
    for (int d = 0; d < n; ++d) off += idx[d] * t.stride(d);
    float v;
    convert_host(&v, DType::kF32, base + off * int64_t(es), t.dtype(), 1);
    fn(i, v);
    for (int d = n - 1; d >= 0; --d) {
      if (++idx[d] < t.size(d)) break;
      idx[d] = 0;
    }
  }
}
}  // namespace

Tensor to_contiguous_f32(const Tensor& host) {
  Tensor out = Tensor::empty(host.shape(), DType::kF32, cpu_allocator());
  float* p = out.data_as<float>();
  for_each_f32(host, [&](int64_t i, float v) { p[i] = v; });
  return out;
}

double rel_l2(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  if (a.shape() != b.shape()) return std::numeric_limits<double>::infinity();
  Tensor ac = to_contiguous_f32(a), bc = to_contiguous_f32(b);
  const float* pa = ac.data_as<float>();
  const float* pb = bc.data_as<float>();
  double num = 0, den = 0;
  for (int64_t i = 0; i < ac.numel(); ++i) {
    if (std::isnan(pa[i]) || std::isnan(pb[i])) return std::numeric_limits<double>::infinity();
    const double d = double(pa[i]) - double(pb[i]);
    num += d * d;
    den += double(pb[i]) * double(pb[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  if (a.shape() != b.shape()) return std::numeric_limits<double>::infinity();
  Tensor ac = to_contiguous_f32(a), bc = to_contiguous_f32(b);
  const float* pa = ac.data_as<float>();
  const float* pb = bc.data_as<float>();
  double m = 0;
  for (int64_t i = 0; i < ac.numel(); ++i) {
    if (std::isnan(pa[i]) || std::isnan(pb[i])) return std::numeric_limits<double>::infinity();
    m = std::max(m, std::fabs(double(pa[i]) - double(pb[i])));
  }
  return m;
}

// PARADIT_FIXTURES_DIR in the environment wins over the build-time path, so test binaries built on one
// machine run on another (the GPU machine) against its copy of the tree.
std::string fixtures_dir() {
  const char* env = std::getenv("PARADIT_FIXTURES_DIR");
  return env && *env ? env : PARADIT_FIXTURES_DIR;
}

void host_assign(const Tensor& dst, const Tensor& src) {
  ASSERT_EQ(dst.shape(), src.shape());
  const Tensor s = to_contiguous_f32(src);
  const int n = dst.dim();
  std::vector<int64_t> idx(size_t(n), 0);
  for (int64_t i = 0; i < dst.numel(); ++i) {
    int64_t off = 0;
    for (int d = 0; d < n; ++d) off += idx[size_t(d)] * dst.stride(d);
    dst.data_as<float>()[off] = s.data_as<float>()[i];
    for (int d = n - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < dst.size(d)) break;
      idx[size_t(d)] = 0;
    }
  }
}

int64_t count_written(const Tensor& buffer) {
  int64_t n = 0;
  for (int64_t i = 0; i < buffer.numel(); ++i) n += !std::isnan(buffer.data_as<float>()[i]);
  return n;
}

StatusCode code_of(const std::function<void()>& fn, std::string* what) {
  try {
    fn();
  } catch (const Error& e) {
    if (what) *what = e.what();
    return e.status().code();
  }
  return StatusCode::kOk;
}

std::string expect_invalid(const std::function<void()>& fn, const char* op) {
  std::string what;
  const StatusCode code = code_of(fn, &what);
  if (code == StatusCode::kOk) {
    ADD_FAILURE() << op << ": expected Error(kInvalidArgument), nothing was thrown";
    return "";
  }
  EXPECT_EQ(code, StatusCode::kInvalidArgument) << what;
  EXPECT_NE(what.find(op), std::string::npos) << "message should name the op: " << what;
  return code == StatusCode::kInvalidArgument ? what : "";
}

void expect_error(const std::function<void()>& fn, StatusCode code, const std::vector<std::string>& parts) {
  const Status st = capture(fn);
  ASSERT_FALSE(st.ok()) << "expected an error mentioning " << (parts.empty() ? "" : parts[0]);
  EXPECT_EQ(st.code(), code) << st.to_string();
  for (const auto& p : parts)
    EXPECT_NE(st.message().find(p), std::string::npos) << "'" << p << "' not in: " << st.message();
}

std::vector<MeshDegrees> every_sp_cfg_dp_mesh() {
  std::vector<MeshDegrees> meshes;
  for (int world = 1; world <= 8; ++world)
    for (int u = 1; u <= world; ++u)
      for (int r = 1; u * r <= world; ++r)
        for (int c = 1; c <= 2 && u * r * c <= world; ++c)
          if (world % (u * r * c) == 0)
            meshes.push_back({.ulysses = u, .ring = r, .cfg = c, .dp = world / (u * r * c)});
  return meshes;
}

void ScratchDirTest::SetUp() {
  namespace fs = std::filesystem;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = fs::temp_directory_path() / (std::string("paradit_") + info->test_suite_name() + "_" +
                                                    std::to_string(getpid()) + "_" + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  dir_ = dir;
}

void ScratchDirTest::TearDown() { std::filesystem::remove_all(dir_); }

std::string ScratchDirTest::path(const std::string& name) const { return (dir_ / name).string(); }

std::unique_ptr<Backend> cuda_backend_or_null(std::string* why) {
  if (cuda_device_count(why) == 0) return nullptr;
  try {
    return create_cuda_backend(0);
  } catch (const Error& e) {
    *why = e.what();
    return nullptr;
  }
}

}  // namespace paradit::test
