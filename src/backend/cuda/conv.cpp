#include "backend/cuda/conv.h"

#include <algorithm>
#include <functional>
#include <string>

#include "backend/cuda/copy.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/im2col.h"
#include "backend/cuda/scratch.h"
#include "paradit/core/log.h"
#include "paradit/core/status.h"

#include "backend/cuda/cudnn_fe.h"

namespace paradit::cuda {

namespace fe = cudnn_frontend;

namespace {

constexpr int64_t kUidX = 1, kUidW = 2, kUidB = 3, kUidY = 4;
// cuDNN plans needing more workspace than this are left out.
constexpr int64_t kMaxWorkspace = int64_t(256) << 20;
// The GEMM path's im2col tile: at most this many bytes of [pixels, kh·kw·Cin] bf16.
constexpr int64_t kColsBytes = int64_t(128) << 20;

void check_fe(fe::error_t err, const char* step, const std::string& what) {
  if (err.is_good()) return;
  throw Error(StatusCode::kUnimplemented,
              detail::concat("conv2d: cuDNN ", step, " failed for ", what, ": ", err.get_message()));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Batch, row and pixel strides of an NHWC tensor, with those of size-1 dimensions replaced by the packed value
// (they are never used, and cuDNN checks strides for consistency).
void nhwc_strides(const Tensor& t, int64_t out[3]) {
  int64_t inner = t.size(3);
  for (int d = 2; d >= 0; --d) {
    out[d] = t.size(d) == 1 ? inner : t.stride(d);
    inner = out[d] * t.size(d);
  }
}

// The element stride between consecutive pixels of an NHWC tensor when its B·H·W pixels are evenly spaced
// (dimensions of size 1 impose nothing), else 0.
int64_t even_pixel_stride(const Tensor& t) {
  int64_t stride = 0, span = 1;  // span: pixels covered by the dimensions already merged
  for (int d = 2; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (stride == 0)
      stride = t.stride(d);
    else if (t.stride(d) != stride * span)
      return 0;
    span *= t.size(d);
  }
  return stride == 0 ? t.size(3) : stride;  // a single pixel: any stride ≥ C does
}

std::string describe(const Tensor& y, const Tensor& x, const Tensor& w, bool bias, int pad) {
  return detail::concat("x ", x.desc(), " strides ", shape_str(x.strides()), ", w ", w.desc(), ", y strides ",
                        shape_str(y.strides()), ", pad ", pad, bias ? ", with bias" : "");
}

}  // namespace

struct Conv2d::Entry {
  std::shared_ptr<fe::graph::Graph> graph;  // null: cuDNN has no engine, the GEMM path runs
  bool fused_bias = false;
  int64_t workspace_bytes = 0;
  std::unordered_map<int64_t, void*> pack;  // kept between calls: only the pointers change
};

bool Conv2d::Key::operator==(const Key& o) const {
  return b == o.b && h == o.h && w == o.w && cin == o.cin && cout == o.cout && kh == o.kh && kw == o.kw &&
         pad == o.pad && xs[0] == o.xs[0] && xs[1] == o.xs[1] && xs[2] == o.xs[2] && ys[0] == o.ys[0] &&
         ys[1] == o.ys[1] && ys[2] == o.ys[2] && bias == o.bias;
}

size_t Conv2d::KeyHash::operator()(const Key& k) const {
  size_t h = 0;
  const auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  for (int64_t v :
       {k.b, k.h, k.w, k.cin, k.cout, k.kh, k.kw, k.pad, k.xs[0], k.xs[1], k.xs[2], k.ys[0], k.ys[1], k.ys[2]})
    mix(uint64_t(v));
  mix(uint64_t(k.bias));
  return h;
}

Conv2d::Conv2d(cudaStream_t stream, LtMatmul& matmul, bool force_gemm)
    : stream_(stream), matmul_(matmul), force_gemm_(force_gemm) {}

Conv2d::~Conv2d() {
  cache_.clear();
  if (handle_) cudnnDestroy(static_cast<cudnnHandle_t>(handle_));
}

Conv2d::Entry& Conv2d::entry_for(const Key& key, const Tensor& y, const Tensor& x, const Tensor& w) {
  auto it = cache_.find(key);
  if (it != cache_.end()) return *it->second;
  if (!handle_) {
    cudnnHandle_t h = nullptr;
    PD_CUDNN_CHECK(cudnnCreate(&h));
    const cudnnStatus_t st = cudnnSetStream(h, stream_);
    if (st != CUDNN_STATUS_SUCCESS) {
      cudnnDestroy(h);
      throw_cudnn(st, "cudnnSetStream", __FILE__, __LINE__);
    }
    handle_ = h;
  }
  const int64_t Ho = key.h + 2 * key.pad - key.kh + 1, Wo = key.w + 2 * key.pad - key.kw + 1;
  const std::string what = describe(y, x, w, key.bias, int(key.pad));

  // One attempt: the conv, with the bias as a fused pointwise add or without it.
  const auto build = [&](bool fused_bias, Entry& e) {
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    // cuDNN's dims are always [N, C, H, W]; the strides say the memory is NHWC (filters KRSC).
    auto X = g->tensor(fe::graph::Tensor_attributes()
                           .set_name("x")
                           .set_uid(kUidX)
                           .set_dim({key.b, key.cin, key.h, key.w})
                           .set_stride({key.xs[0], 1, key.xs[1], key.xs[2]}));
    auto W = g->tensor(fe::graph::Tensor_attributes()
                           .set_name("w")
                           .set_uid(kUidW)
                           .set_dim({key.cout, key.cin, key.kh, key.kw})
                           .set_stride({key.kh * key.kw * key.cin, 1, key.kw * key.cin, key.cin}));
    auto options = fe::graph::Conv_fprop_attributes()
                       .set_name("conv")
                       .set_padding({key.pad, key.pad})
                       .set_stride({1, 1})
                       .set_dilation({1, 1})
                       .set_compute_data_type(fe::DataType_t::FLOAT);
    auto Y = g->conv_fprop(X, W, options);
    if (fused_bias) {
      auto Bt = g->tensor(fe::graph::Tensor_attributes()
                              .set_name("bias")
                              .set_uid(kUidB)
                              .set_dim({1, key.cout, 1, 1})
                              .set_stride({key.cout, 1, key.cout, key.cout}));
      Y = g->pointwise(Y, Bt,
                       fe::graph::Pointwise_attributes()
                           .set_name("bias_add")
                           .set_mode(fe::PointwiseMode_t::ADD)
                           .set_compute_data_type(fe::DataType_t::FLOAT));
    }
    Y->set_output(true)
        .set_uid(kUidY)
        .set_data_type(fe::DataType_t::BFLOAT16)
        .set_dim({key.b, key.cout, Ho, Wo})
        .set_stride({key.ys[0], 1, key.ys[1], key.ys[2]});
    cudnnHandle_t handle = static_cast<cudnnHandle_t>(handle_);
    check_fe(g->validate(), "graph validation", what);
    check_fe(g->build_operation_graph(handle), "operation graph", what);
    check_fe(g->create_execution_plans({fe::HeurMode_t::A}), "engine heuristics", what);
    g->deselect_behavior_notes({fe::BehaviorNote_t::RUNTIME_COMPILATION})
        .deselect_numeric_notes({fe::NumericalNote_t::REDUCED_PRECISION_REDUCTION, fe::NumericalNote_t::FFT,
                                 fe::NumericalNote_t::NONDETERMINISTIC})
        .deselect_workspace_greater_than(kMaxWorkspace);
    check_fe(g->check_support(), "support check", what);
    check_fe(g->build_plans(), "plan build", what);
    check_fe(g->get_workspace_size(e.workspace_bytes), "workspace query", what);
    e.graph = std::move(g);
    e.fused_bias = fused_bias;
  };

  auto e = std::make_unique<Entry>();
  std::string why;
  for (bool fused : {true, false}) {
    if (fused && !key.bias) continue;
    try {
      build(fused, *e);
      break;
    } catch (const Error& err) {
      // Any failure here means "not this way": the GEMM path computes the same thing.
      PD_LOG(kDebug, err.what());
      why = err.what();
      if (why.size() > 400) why = why.substr(0, 400) + " …";  // the front end lists every candidate's failure
    }
  }
  if (e->graph)
    PD_LOG(kDebug, "conv2d: cuDNN plan for ", what, e->fused_bias ? " (bias fused)" : "");
  else
    PD_LOG(kWarn, "conv2d: cuDNN has no engine for ", what, " (", why, "); using im2col + cuBLASLt GEMMs");
  return *cache_.emplace(key, std::move(e)).first->second;
}

void Conv2d::run(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, int pad, Allocator& alloc) {
  Key key{};
  key.b = x.size(0);
  key.h = x.size(1);
  key.w = x.size(2);
  key.cin = x.size(3);
  key.cout = w.size(0);
  key.kh = w.size(1);
  key.kw = w.size(2);
  key.pad = pad;
  nhwc_strides(x, key.xs);
  nhwc_strides(y, key.ys);
  key.bias = bias.defined();

  // What cuDNN's bf16 NHWC kernels take: channel counts, pointers and strides 16-byte aligned.
  bool eligible = !force_gemm_ && key.cin % 8 == 0 && key.cout % 8 == 0 && aligned16(x.data()) && aligned16(y.data()) &&
                  aligned16(w.data()) && (!key.bias || aligned16(bias.data()));
  for (int d = 0; d < 3 && eligible; ++d) eligible = key.xs[d] % 8 == 0 && key.ys[d] % 8 == 0;
  if (eligible) {
    Entry& e = entry_for(key, y, x, w);
    if (e.graph) {
      e.pack[kUidX] = x.data();
      e.pack[kUidW] = w.data();
      e.pack[kUidY] = y.data();
      if (e.fused_bias) e.pack[kUidB] = bias.data();
      Scratch ws(alloc, size_t(e.workspace_bytes));
      fe::error_t st = e.graph->execute(static_cast<cudnnHandle_t>(handle_), e.pack, ws.get());
      if (!st.is_good())
        PD_THROW(kInternal, "conv2d: cuDNN execution failed for ", describe(y, x, w, key.bias, pad), ": ",
                 st.get_message());
      if (key.bias && !e.fused_bias) {
        // y += bias, broadcast over the pixels.
        const Tensor b4 =
            Tensor::borrow(bias.data(), y.shape(), {0, 0, 0, bias.stride(0)}, bias.dtype(), bias.device());
        launch_add(y, y, b4, stream_);
      }
      return;
    }
  }
  run_gemm(y, x, w, bias, pad, alloc);
}

void Conv2d::run_gemm(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, int pad,
                      Allocator& alloc) {
  const int64_t B = x.size(0), Cin = x.size(3), Cout = w.size(0), kh = w.size(1), kw = w.size(2);
  const int64_t Ho = y.size(1), Wo = y.size(2);
  const int64_t K = kh * kw * Cin, P = B * Ho * Wo;
  const Device dev = y.device();

  // The GEMM's K and N are padded to multiples of 8 (zero weights, zero im2col columns) so that every operand
  // has 16-byte aligned rows, whatever Cin and Cout are (the VAE's first conv has Cin = 16, its last Cout = 3).
  const int64_t Kp = (K + 7) / 8 * 8, Np = (Cout + 7) / 8 * 8;
  const void* wp = w.data();
  const void* bp = bias.defined() ? bias.data() : nullptr;
  Scratch wpad(alloc, Kp != K || Np != Cout ? size_t(Np * Kp) * 2 : 0);
  Scratch bpad(alloc, Np != Cout && bp ? size_t(Np) * 2 : 0);
  if (wpad.get()) {
    PD_CUDA_CHECK(cudaMemsetAsync(wpad.get(), 0, size_t(Np * Kp) * 2, stream_));
    launch_copy(Tensor::borrow(wpad.get(), {Cout, K}, {Kp, 1}, DType::kBF16, dev), w.view({Cout, K}), stream_);
    wp = wpad.get();
  }
  if (bpad.get()) {
    PD_CUDA_CHECK(cudaMemsetAsync(bpad.get(), 0, size_t(Np) * 2, stream_));
    launch_copy(Tensor::borrow(bpad.get(), {Cout}, {1}, DType::kBF16, dev), bias, stream_);
    bp = bpad.get();
  }

  // The GEMM writes [pixels, Np] rows: into y itself when its pixels are evenly spaced and Np = Cout, else into
  // a packed temporary whose first Cout channels are copied into y at the end.
  int64_t ldy = even_pixel_stride(y);
  const bool direct_y = Np == Cout && ldy >= Cout;
  if (!direct_y) ldy = Np;
  Scratch tmp(alloc, direct_y ? 0 : size_t(P * Np) * 2);
  char* target = direct_y ? static_cast<char*>(y.data()) : static_cast<char*>(tmp.get());

  const int64_t x_stride = even_pixel_stride(x);
  if (kh == 1 && kw == 1 && pad == 0 && Kp == K && x_stride >= Cin) {
    // A 1×1 conv over evenly spaced pixels: one GEMM straight from x.
    GemmProblem p;
    p.rows = P;
    p.n = Np;
    p.k = K;
    p.ldx = x_stride;
    p.ldy = ldy;
    p.ldw = K;
    matmul_.linear(p, target, x.data(), wp, bp, Epilogue::kNone, /*accumulate=*/false, stream_);
  } else {
    int64_t tile = std::clamp<int64_t>(kColsBytes / (Kp * 2), 1, P);
    if (tile < P && tile >= 256) tile = tile / 256 * 256;
    Scratch cols(alloc, size_t(tile * Kp) * 2);
    // im2col writes columns [0, K) only: the padding columns stay zero for every tile.
    if (Kp != K) PD_CUDA_CHECK(cudaMemsetAsync(cols.get(), 0, size_t(tile * Kp) * 2, stream_));
    for (int64_t p0 = 0; p0 < P; p0 += tile) {
      const int64_t n = std::min(tile, P - p0);
      launch_im2col(cols.get(), Kp, x, p0, n, Ho, Wo, kh, kw, pad, stream_);
      GemmProblem p;
      p.rows = n;
      p.n = Np;
      p.k = Kp;
      p.ldx = Kp;
      p.ldy = ldy;
      p.ldw = Kp;
      matmul_.linear(p, target + p0 * ldy * 2, cols.get(), wp, bp, Epilogue::kNone, /*accumulate=*/false, stream_);
    }
  }
  if (!direct_y)
    launch_copy(y, Tensor::borrow(tmp.get(), y.shape(), {Ho * Wo * Np, Wo * Np, Np, 1}, DType::kBF16, dev), stream_);
}

}  // namespace paradit::cuda
