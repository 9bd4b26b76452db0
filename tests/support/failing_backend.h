// A CPU backend wrapper that fails on demand, for tests of a rank failing mid-request.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/core/status.h"

namespace paradit::test {

// A backend that throws from attention on its armed-th call while armed: a rank failing mid-request,
// inside a collective's neighbourhood (its SP peers wait for its attention all-to-all / ring transfer).
class FailingBackend final : public Backend {
 public:
  FailingBackend(std::unique_ptr<Backend> inner, std::atomic<int>* armed) : in_(std::move(inner)), armed_(armed) {}

  std::string name() const override { return in_->name(); }
  Device device() const override { return in_->device(); }
  DType compute_dtype() const override { return in_->compute_dtype(); }
  Allocator& allocator() override { return in_->allocator(); }
  void synchronize() override { in_->synchronize(); }
  void copy(const Tensor& d, const Tensor& s) override { in_->copy(d, s); }
  void fill(const Tensor& d, float v) override { in_->fill(d, v); }
  void fill_random(const Tensor& d, uint64_t seed, float sd) override { in_->fill_random(d, seed, sd); }
  void linear(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b, Epilogue ep) override {
    in_->linear(y, x, w, b, ep);
  }
  void layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& sh, const Tensor& sc, float e) override {
    in_->layer_norm_modulate(y, x, sh, sc, e);
  }
  void lse_merge(const Tensor& o, const Tensor& l, const std::vector<Tensor>& bo,
                 const std::vector<Tensor>& bl) override {
    in_->lse_merge(o, l, bo, bl);
  }
  void gated_add_layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& d, const Tensor& g,
                                     const Tensor& sh, const Tensor& sc, float e) override {
    in_->gated_add_layer_norm_modulate(y, x, d, g, sh, sc, e);
  }
  void rms_norm_rope(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& c, const Tensor& s,
                     float e) override {
    in_->rms_norm_rope(y, x, w, c, s, e);
  }
  void attention(const Tensor& o, const Tensor& l, const Tensor& q, const Tensor& k, const Tensor& v,
                 float scale) override {
    if (armed_->load() > 0 && armed_->fetch_sub(1) == 1) PD_THROW(kOutOfMemory, "injected failure in attention");
    in_->attention(o, l, q, k, v, scale);
  }
  void silu(const Tensor& y, const Tensor& x) override { in_->silu(y, x); }
  void gelu_tanh(const Tensor& y, const Tensor& x) override { in_->gelu_tanh(y, x); }
  void add(const Tensor& y, const Tensor& a, const Tensor& b) override { in_->add(y, a, b); }
  void gated_add(const Tensor& x, const Tensor& y, const Tensor& g) override { in_->gated_add(x, y, g); }
  void axpby(const Tensor& y, const Tensor& a, float al, const Tensor& b, float be) override {
    in_->axpby(y, a, al, b, be);
  }
  void mul(const Tensor& y, const Tensor& a, const Tensor& b) override { in_->mul(y, a, b); }
  void quick_gelu(const Tensor& y, const Tensor& x) override { in_->quick_gelu(y, x); }
  void embedding(const Tensor& o, const Tensor& t, const std::vector<int32_t>& ids) override {
    in_->embedding(o, t, ids);
  }
  void layer_norm(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b, float e) override {
    in_->layer_norm(y, x, w, b, e);
  }
  void attention_biased(const Tensor& o, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const Tensor& bias, bool causal) override {
    in_->attention_biased(o, q, k, v, scale, bias, causal);
  }
  void conv2d(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b, int pad) override {
    in_->conv2d(y, x, w, b, pad);
  }
  void group_norm(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b, int groups, float e,
                  bool silu) override {
    in_->group_norm(y, x, w, b, groups, e, silu);
  }
  void upsample_nearest2x(const Tensor& y, const Tensor& x) override { in_->upsample_nearest2x(y, x); }
  void to_rgb8(const Tensor& y, uint8_t* dst) override { in_->to_rgb8(y, dst); }
  void linear_accumulate(const Tensor& y, const Tensor& x, const Tensor& w) override {
    in_->linear_accumulate(y, x, w);
  }
  void group_norm_sums(const Tensor& s, const Tensor& x, int groups, const Tensor& shift) override {
    in_->group_norm_sums(s, x, groups, shift);
  }
  void group_norm_apply(const Tensor& y, const Tensor& x, const Tensor& s, const Tensor& shift, double count,
                        const Tensor& w, const Tensor& b, int groups, float e, bool silu) override {
    in_->group_norm_apply(y, x, s, shift, count, w, b, groups, e, silu);
  }

 private:
  std::unique_ptr<Backend> in_;
  std::atomic<int>* armed_;  // > 0: calls left until the failing one
};

}  // namespace paradit::test
