// Shared test helpers: random host tensors, comparisons, fixtures, backend selection.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/core/status.h"
#include "paradit/core/tensor.h"
#include "paradit/parallel/device_mesh.h"

namespace paradit::test {

// Host f32 tensor of N(0, stddev) values from a fixed seed (never zeros).
Tensor random_host(const Shape& shape, uint64_t seed, float stddev = 1.0f);
// Host f32 tensor filled with NaN: outputs are poisoned before an op writes them, so an unwritten element fails.
Tensor poisoned_host(const Shape& shape);
// ‖a − b‖₂ / ‖b‖₂ over two host f32 tensors of equal shape (any strides); NaN anywhere gives +inf.
double rel_l2(const Tensor& a, const Tensor& b);
// Largest |a − b| (NaN anywhere gives +inf).
double max_abs_diff(const Tensor& a, const Tensor& b);
// Contiguous host f32 copy of a host tensor of any dtype/strides.
Tensor to_contiguous_f32(const Tensor& host);

std::string fixtures_dir();  // tests/fixtures in the source tree (PARADIT_FIXTURES_DIR overrides it)

// Sets every element of a host f32 view (any strides) from a tensor of the same shape.
void host_assign(const Tensor& dst, const Tensor& src);
// Elements of a contiguous host f32 buffer that are not NaN: an op writing into a view of a poisoned buffer
// must leave exactly the view's elements finite.
int64_t count_written(const Tensor& buffer);

// The error code fn throws (kOk when it throws nothing), its message in *what.
StatusCode code_of(const std::function<void()>& fn, std::string* what = nullptr);
// Checks that fn throws Error(kInvalidArgument) whose message names op; returns the message ("" on failure).
std::string expect_invalid(const std::function<void()>& fn, const char* op);

// Checks that fn throws Error(code) whose message contains every one of parts.
void expect_error(const std::function<void()>& fn, StatusCode code, const std::vector<std::string>& parts);

// Every mesh of 1..8 ranks over ulysses, ring, cfg (1 or 2) and dp (the rest of the world).
std::vector<MeshDegrees> every_sp_cfg_dp_mesh();

// A test fixture with a fresh directory per test, removed afterwards.
class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  std::string path(const std::string& name) const;
  std::filesystem::path dir_;
};

// The CUDA backend on GPU 0, or null after a GTEST_SKIP-worthy reason in *why.
std::unique_ptr<Backend> cuda_backend_or_null(std::string* why);

// In a GPU test: skips the test cleanly when there is no usable GPU.
#define PD_REQUIRE_GPU(var)                                      \
  std::string pd_why_;                                           \
  auto var = ::paradit::test::cuda_backend_or_null(&pd_why_);    \
  if (!var) GTEST_SKIP() << "no usable GPU: " << pd_why_

}  // namespace paradit::test
