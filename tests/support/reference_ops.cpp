#include "reference_ops.h"

#include <cmath>
#include <vector>

#include "paradit/core/status.h"
#include "test_util.h"

namespace paradit::test::ref {
namespace {

std::vector<double> doubles(const Tensor& t) {
  Tensor c = to_contiguous_f32(t);
  const float* p = c.data_as<float>();
  return std::vector<double>(p, p + c.numel());
}

Tensor from_doubles(const Shape& shape, const std::vector<double>& v) {
  Tensor t = Tensor::empty(shape, DType::kF32, cpu_allocator());
  PD_CHECK(int64_t(v.size()) == t.numel());
  float* p = t.data_as<float>();
  for (size_t i = 0; i < v.size(); ++i) p[i] = float(v[i]);
  return t;
}

// 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³). 1 + tanh(u) is evaluated as 2/(1 + e^(−2u)), the same
// value, because in double 1 + tanh(u) cancels to 0 once u < −19 while GELU is still ~1e-16·x there.
double gelu_tanh_d(double x) {
  const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return 0.5 * x * (2.0 / (1.0 + std::exp(-2.0 * u)));
}

uint64_t mix(uint64_t z) {  // splitmix64 (Steele, Lea, Flood 2014)
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

Tensor fill_random(const Shape& shape, uint64_t seed, float stddev) {
  std::vector<double> out(size_t(shape_numel(shape)));
  for (size_t i = 0; i < out.size(); ++i) {
    const double u = double(mix(seed + uint64_t(i) * 0x9E3779B97F4A7C15ull) >> 40) / 16777216.0;
    out[i] = double(stddev) * std::sqrt(3.0) * (2.0 * u - 1.0);
  }
  return from_doubles(shape, out);
}

// ep(x·wᵀ + bias) in double, row-major [M, N].
static std::vector<double> linear_d(const Tensor& x, const Tensor& w, const Tensor& bias, Epilogue ep) {
  const int64_t K = x.size(-1), N = w.size(0), M = x.numel() / K;
  const auto xd = doubles(x), wd = doubles(w);
  const auto bd = bias.defined() ? doubles(bias) : std::vector<double>(size_t(N), 0.0);
  std::vector<double> y(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = bd[size_t(n)];
      for (int64_t k = 0; k < K; ++k) acc += xd[size_t(m * K + k)] * wd[size_t(n * K + k)];
      y[size_t(m * N + n)] = ep == Epilogue::kGeluTanh ? gelu_tanh_d(acc) : acc;
    }
  return y;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, Epilogue ep) {
  Shape shape = x.shape();
  shape.back() = w.size(0);
  return from_doubles(shape, linear_d(x, w, bias, ep));
}

Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps) {
  const int64_t B = x.size(0), S = x.size(1), D = x.size(2);
  const auto xd = doubles(x);
  const bool mod = shift.defined();
  const auto sh = mod ? doubles(shift) : std::vector<double>();
  const auto sc = mod ? doubles(scale) : std::vector<double>();
  std::vector<double> y(xd.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) {
      const double* row = xd.data() + (b * S + s) * D;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < D; ++i) mean += row[i];
      mean /= double(D);
      for (int64_t i = 0; i < D; ++i) var += (row[i] - mean) * (row[i] - mean);
      var /= double(D);  // biased, as torch's layer_norm
      for (int64_t i = 0; i < D; ++i) {
        double v = (row[i] - mean) / std::sqrt(var + double(eps));
        if (mod) v = v * (1.0 + sc[size_t(b * D + i)]) + sh[size_t(b * D + i)];
        y[size_t((b * S + s) * D + i)] = v;
      }
    }
  return from_doubles(x.shape(), y);
}

Tensor rms_norm_rope(const Tensor& x, const Tensor& weight, const Tensor& cos, const Tensor& sin, float eps) {
  const int64_t B = x.size(0), S = x.size(1), H = x.size(2), d = x.size(3);
  const auto xd = doubles(x), wd = doubles(weight);
  const bool rope = cos.defined();
  const auto cd = rope ? doubles(cos) : std::vector<double>();
  const auto sd = rope ? doubles(sin) : std::vector<double>();
  std::vector<double> y(xd.size()), n(static_cast<size_t>(d));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < H; ++h) {
        const size_t base = size_t(((b * S + s) * H + h) * d);
        double ms = 0;
        for (int64_t i = 0; i < d; ++i) ms += xd[base + i] * xd[base + i];
        ms /= double(d);
        for (int64_t i = 0; i < d; ++i) n[size_t(i)] = xd[base + i] / std::sqrt(ms + double(eps)) * wd[size_t(i)];
        for (int64_t i = 0; i < d; ++i) {
          if (!rope) {
            y[base + i] = n[size_t(i)];
            continue;
          }
          const double c = cd[size_t(s * d + i)], sn = sd[size_t(s * d + i)];
          // Pair (a, b) = (n[2k], n[2k+1]): y[2k] = a·cos − b·sin, y[2k+1] = b·cos + a·sin.
          if (i % 2 == 0) y[base + i] = n[size_t(i)] * c - n[size_t(i + 1)] * sn;
          else y[base + i] = n[size_t(i)] * c + n[size_t(i - 1)] * sn;
        }
      }
  return from_doubles(x.shape(), y);
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor* lse) {
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), d = q.size(3), Skv = k.size(1);
  const auto qd = doubles(q), kd = doubles(k), vd = doubles(v);
  std::vector<double> out(qd.size()), l(static_cast<size_t>(B * H * Sq)), logits(static_cast<size_t>(Skv));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        const double* qi = qd.data() + ((b * Sq + i) * H + h) * d;
        double mx = -INFINITY;
        for (int64_t j = 0; j < Skv; ++j) {
          const double* kj = kd.data() + ((b * Skv + j) * H + h) * d;
          double dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += qi[c] * kj[c];
          logits[size_t(j)] = double(scale) * dot;
          mx = std::max(mx, logits[size_t(j)]);
        }
        double sum = 0;
        for (int64_t j = 0; j < Skv; ++j) sum += std::exp(logits[size_t(j)] - mx);
        l[size_t((b * H + h) * Sq + i)] = mx + std::log(sum);
        double* oi = out.data() + ((b * Sq + i) * H + h) * d;
        for (int64_t c = 0; c < d; ++c) oi[c] = 0;
        for (int64_t j = 0; j < Skv; ++j) {
          const double p = std::exp(logits[size_t(j)] - mx) / sum;
          const double* vj = vd.data() + ((b * Skv + j) * H + h) * d;
          for (int64_t c = 0; c < d; ++c) oi[c] += p * vj[c];
        }
      }
  if (lse) *lse = from_doubles({B, H, Sq}, l);
  return from_doubles(q.shape(), out);
}

Tensor silu(const Tensor& x) {
  auto v = doubles(x);
  for (auto& e : v) e = e / (1.0 + std::exp(-e));
  return from_doubles(x.shape(), v);
}

Tensor gelu_tanh(const Tensor& x) {
  auto v = doubles(x);
  for (auto& e : v) e = gelu_tanh_d(e);
  return from_doubles(x.shape(), v);
}

Tensor add(const Tensor& a, const Tensor& b) {
  auto va = doubles(a);
  const auto vb = doubles(b);
  for (size_t i = 0; i < va.size(); ++i) va[i] += vb[i];
  return from_doubles(a.shape(), va);
}

Tensor gated_add(const Tensor& x, const Tensor& y, const Tensor& gate) {
  const int64_t B = x.size(0), S = x.size(1), D = x.size(2);
  auto vx = doubles(x);
  const auto vy = doubles(y), g = doubles(gate);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t i = 0; i < D; ++i) {
        const size_t j = size_t((b * S + s) * D + i);
        vx[j] += g[size_t(b * D + i)] * vy[j];
      }
  return from_doubles(x.shape(), vx);
}

Tensor axpby(const Tensor& a, float alpha, const Tensor& b, float beta) {
  auto va = doubles(a);
  const auto vb = doubles(b);
  for (size_t i = 0; i < va.size(); ++i) va[i] = double(alpha) * va[i] + double(beta) * vb[i];
  return from_doubles(a.shape(), va);
}

Tensor mul(const Tensor& a, const Tensor& b) {
  auto va = doubles(a);
  const auto vb = doubles(b);
  for (size_t i = 0; i < va.size(); ++i) va[i] *= vb[i];
  return from_doubles(a.shape(), va);
}

Tensor quick_gelu(const Tensor& x) {
  auto v = doubles(x);
  for (auto& e : v) e = e / (1.0 + std::exp(-1.702 * e));
  return from_doubles(x.shape(), v);
}

Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids, int64_t B, int64_t S) {
  const int64_t D = table.size(1);
  PD_CHECK(int64_t(ids.size()) == B * S);
  const auto t = doubles(table);
  std::vector<double> out(size_t(B * S * D));
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < D; ++c) out[i * size_t(D) + size_t(c)] = t[size_t(ids[i]) * size_t(D) + size_t(c)];
  return from_doubles({B, S, D}, out);
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  const int64_t D = x.size(-1), rows = x.numel() / D;
  const auto xd = doubles(x), wd = doubles(weight);
  const auto bd = bias.defined() ? doubles(bias) : std::vector<double>(size_t(D), 0.0);
  std::vector<double> y(xd.size());
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = xd.data() + r * D;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < D; ++i) mean += row[i];
    mean /= double(D);
    for (int64_t i = 0; i < D; ++i) var += (row[i] - mean) * (row[i] - mean);
    var /= double(D);
    for (int64_t i = 0; i < D; ++i)
      y[size_t(r * D + i)] = (row[i] - mean) / std::sqrt(var + double(eps)) * wd[size_t(i)] + bd[size_t(i)];
  }
  return from_doubles(x.shape(), y);
}

Tensor attention_biased(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const Tensor& bias,
                        bool causal) {
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), d = q.size(3), Skv = k.size(1);
  const auto qd = doubles(q), kd = doubles(k), vd = doubles(v);
  const auto bd = bias.defined() ? doubles(bias) : std::vector<double>();
  std::vector<double> out(qd.size()), logits(static_cast<size_t>(Skv));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        const double* qi = qd.data() + ((b * Sq + i) * H + h) * d;
        double mx = -INFINITY;
        for (int64_t j = 0; j < Skv; ++j) {
          if (causal && j > i) {
            logits[size_t(j)] = -INFINITY;
            continue;
          }
          const double* kj = kd.data() + ((b * Skv + j) * H + h) * d;
          double dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += qi[c] * kj[c];
          logits[size_t(j)] = double(scale) * dot + (bias.defined() ? bd[size_t((h * Sq + i) * Skv + j)] : 0.0);
          mx = std::max(mx, logits[size_t(j)]);
        }
        double* oi = out.data() + ((b * Sq + i) * H + h) * d;
        for (int64_t c = 0; c < d; ++c) oi[c] = 0;
        if (mx == -INFINITY) continue;  // no visible key
        double sum = 0;
        for (int64_t j = 0; j < Skv; ++j) sum += std::exp(logits[size_t(j)] - mx);
        for (int64_t j = 0; j < Skv; ++j) {
          const double p = std::exp(logits[size_t(j)] - mx) / sum;
          const double* vj = vd.data() + ((b * Skv + j) * H + h) * d;
          for (int64_t c = 0; c < d; ++c) oi[c] += p * vj[c];
        }
      }
  return from_doubles(q.shape(), out);
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int pad) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), Cin = x.size(3);
  const int64_t Cout = w.size(0), kh = w.size(1), kw = w.size(2);
  const int64_t Ho = H + 2 * pad - kh + 1, Wo = W + 2 * pad - kw + 1;
  const auto xd = doubles(x), wd = doubles(w);
  const auto bd = bias.defined() ? doubles(bias) : std::vector<double>(size_t(Cout), 0.0);
  std::vector<double> y(size_t(B * Ho * Wo * Cout));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow)
        for (int64_t co = 0; co < Cout; ++co) {
          double acc = bd[size_t(co)];
          for (int64_t dy = 0; dy < kh; ++dy)
            for (int64_t dx = 0; dx < kw; ++dx) {
              const int64_t iy = oh + dy - pad, ix = ow + dx - pad;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;  // zero padding
              const double* xp = xd.data() + ((b * H + iy) * W + ix) * Cin;
              const double* wp = wd.data() + ((co * kh + dy) * kw + dx) * Cin;
              for (int64_t ci = 0; ci < Cin; ++ci) acc += xp[ci] * wp[ci];
            }
          y[size_t(((b * Ho + oh) * Wo + ow) * Cout + co)] = acc;
        }
  return from_doubles({B, Ho, Wo, Cout}, y);
}

Tensor group_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, int groups, float eps, bool silu) {
  const int64_t B = x.size(0), HW = x.size(1) * x.size(2), C = x.size(3), Cg = C / groups;
  const auto xd = doubles(x), wd = doubles(weight), bd = doubles(bias);
  std::vector<double> y(xd.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < groups; ++g) {
      auto at = [&](int64_t p, int64_t c) { return size_t((b * HW + p) * C + g * Cg + c); };
      double mean = 0, var = 0;
      for (int64_t p = 0; p < HW; ++p)
        for (int64_t c = 0; c < Cg; ++c) mean += xd[at(p, c)];
      mean /= double(HW * Cg);
      for (int64_t p = 0; p < HW; ++p)
        for (int64_t c = 0; c < Cg; ++c) var += (xd[at(p, c)] - mean) * (xd[at(p, c)] - mean);
      var /= double(HW * Cg);
      for (int64_t p = 0; p < HW; ++p)
        for (int64_t c = 0; c < Cg; ++c) {
          double v = (xd[at(p, c)] - mean) / std::sqrt(var + double(eps)) * wd[size_t(g * Cg + c)] +
                     bd[size_t(g * Cg + c)];
          if (silu) v = v / (1.0 + std::exp(-v));
          y[at(p, c)] = v;
        }
    }
  return from_doubles(x.shape(), y);
}

Tensor upsample_nearest2x(const Tensor& x) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const auto xd = doubles(x);
  std::vector<double> y(size_t(B * 4 * H * W * C));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < 2 * H; ++i)
      for (int64_t j = 0; j < 2 * W; ++j)
        for (int64_t c = 0; c < C; ++c)
          y[size_t(((b * 2 * H + i) * 2 * W + j) * C + c)] = xd[size_t(((b * H + i / 2) * W + j / 2) * C + c)];
  return from_doubles({B, 2 * H, 2 * W, C}, y);
}

}  // namespace paradit::test::ref
