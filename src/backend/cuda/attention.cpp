#include "backend/cuda/attention.h"

#include <cstring>
#include <functional>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "paradit/core/log.h"
#include "paradit/core/status.h"

#include "backend/cuda/cudnn_fe.h"

namespace paradit::cuda {

namespace fe = cudnn_frontend;

namespace {

constexpr int64_t kUidQ = 1, kUidK = 2, kUidV = 3, kUidO = 4, kUidStats = 5;

// Throws kUnimplemented (cuDNN has no engine for this) or kInternal with the front end's message.
void check_fe(fe::error_t err, const char* step, const std::string& what) {
  if (err.is_good()) return;
  const bool unsupported = err.get_code() == fe::error_code_t::GRAPH_NOT_SUPPORTED ||
                           err.get_code() == fe::error_code_t::HEURISTIC_QUERY_FAILED ||
                           err.get_code() == fe::error_code_t::GRAPH_EXECUTION_PLAN_CREATION_FAILED;
  throw Error(unsupported ? StatusCode::kUnimplemented : StatusCode::kInternal,
              detail::concat("attention: cuDNN SDPA ", step, " failed for ", what, ": ", err.get_message(),
                             unsupported ? " (cuDNN has no fused attention engine for this configuration)" : ""));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Returns a workspace block to the allocator when the call leaves, normally or by an exception. The kernel
// may still be running: reuse of the block is ordered after it because every op runs on the same stream.
struct ScopedBlock {
  Allocator& alloc;
  void* ptr = nullptr;
  ~ScopedBlock() {
    if (ptr) alloc.deallocate(ptr);
  }
};

}  // namespace

struct Sdpa::Entry {
  std::shared_ptr<fe::graph::Graph> graph;  // null: cuDNN refused this configuration
  int64_t workspace_bytes = 0;  // the largest of the candidate plans' (any of them may win the tuning)
  bool tuned = false;
  std::unordered_map<int64_t, void*> pack;  // kept between calls: only the pointers change
};

bool Sdpa::Key::operator==(const Key& o) const {
  const auto same3 = [](const int64_t* a, const int64_t* b) { return a[0] == b[0] && a[1] == b[1] && a[2] == b[2]; };
  return b == o.b && h == o.h && sq == o.sq && skv == o.skv && d == o.d && same3(q, o.q) && same3(k, o.k) &&
         same3(v, o.v) && same3(this->o, o.o) && same3(l, o.l) && scale_bits == o.scale_bits && lse == o.lse;
}

size_t Sdpa::KeyHash::operator()(const Key& k) const {
  size_t h = 0;
  const auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  for (int64_t v : {k.b, k.h, k.sq, k.skv, k.d}) mix(uint64_t(v));
  for (const int64_t* a : {k.q, k.k, k.v, k.o, k.l})
    for (int i = 0; i < 3; ++i) mix(uint64_t(a[i]));
  mix(uint64_t(k.scale_bits) | uint64_t(k.lse) << 32);
  return h;
}

Sdpa::Sdpa(cudaStream_t stream) : stream_(stream) {
  cudnnHandle_t h = nullptr;
  PD_CUDNN_CHECK(cudnnCreate(&h));
  const cudnnStatus_t st = cudnnSetStream(h, stream_);
  if (st != CUDNN_STATUS_SUCCESS) {
    cudnnDestroy(h);
    throw_cudnn(st, "cudnnSetStream", __FILE__, __LINE__);
  }
  handle_ = h;
}

Sdpa::~Sdpa() {
  cache_.clear();
  if (handle_) cudnnDestroy(static_cast<cudnnHandle_t>(handle_));
}

bool Sdpa::eligible(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t d = q.size(3);
  if (d % 8 != 0 || d > 256) return false;
  for (const Tensor* t : {&q, &k, &v, &out}) {
    if (!aligned16(t->data())) return false;
    for (int i = 0; i < 3; ++i)
      if (t->stride(i) % 8 != 0) return false;
  }
  return true;
}

bool Sdpa::run(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
               Allocator& alloc) {
  if (!eligible(out, q, k, v)) return false;
  Key key{};
  key.b = q.size(0);
  key.sq = q.size(1);
  key.h = q.size(2);
  key.d = q.size(3);
  key.skv = k.size(1);
  const auto strides = [](const Tensor& t, int64_t* s) {
    s[0] = t.stride(0);
    s[1] = t.stride(1);
    s[2] = t.stride(2);
  };
  strides(q, key.q);
  strides(k, key.k);
  strides(v, key.v);
  strides(out, key.o);
  if (lse.defined()) strides(lse, key.l);  // lse [B, H, Sq]: batch, head, sequence
  std::memcpy(&key.scale_bits, &scale, sizeof(float));
  key.lse = lse.defined();

  const auto describe = [&] {
    return detail::concat("q ", q.desc(), " strides ", shape_str(q.strides()), ", k ", k.desc(), " strides ",
                          shape_str(k.strides()), ", v strides ", shape_str(v.strides()), ", out strides ",
                          shape_str(out.strides()), lse.defined() ? ", with lse" : "");
  };

  auto it = cache_.find(key);
  if (it == cache_.end()) {
    try {
      auto e = std::make_unique<Entry>();
      auto g = std::make_shared<fe::graph::Graph>();
      g->set_io_data_type(fe::DataType_t::BFLOAT16)
          .set_intermediate_data_type(fe::DataType_t::FLOAT)
          .set_compute_data_type(fe::DataType_t::FLOAT);
      // Dims [B, H, S, d] over our [B, S, H, d] memory: the stride order follows the real layout.
      const auto bhsd = [&](const char* name, int64_t uid, int64_t s, const int64_t* st) {
        return g->tensor(fe::graph::Tensor_attributes()
                             .set_name(name)
                             .set_uid(uid)
                             .set_dim({key.b, key.h, s, key.d})
                             .set_stride({st[0], st[2], st[1], 1}));
      };
      auto Q = bhsd("Q", kUidQ, key.sq, key.q);
      auto K = bhsd("K", kUidK, key.skv, key.k);
      auto V = bhsd("V", kUidV, key.skv, key.v);
      auto options = fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(key.lse).set_attn_scale(scale);
      auto [O, stats] = g->sdpa(Q, K, V, options);
      O->set_output(true)
          .set_uid(kUidO)
          .set_dim({key.b, key.h, key.sq, key.d})
          .set_stride({key.o[0], key.o[2], key.o[1], 1});
      if (key.lse) {
        // cuDNN's Stats is max + ln(Σ exp(s − max)) of the scaled logits, natural log (stats_use_log2 stays off):
        // exactly the log-sum-exp the interface asks for, as [B, H, Sq, 1].
        stats->set_output(true)
            .set_uid(kUidStats)
            .set_data_type(fe::DataType_t::FLOAT)
            .set_dim({key.b, key.h, key.sq, 1})
            .set_stride({key.l[0], key.l[1], key.l[2], 1});
      }
      const std::string what = describe();
      cudnnHandle_t handle = static_cast<cudnnHandle_t>(handle_);
      check_fe(g->validate(), "graph validation", what);
      check_fe(g->build_operation_graph(handle), "operation graph", what);
      check_fe(g->create_execution_plans({fe::HeurMode_t::A}), "engine heuristics", what);
      check_fe(g->check_support(), "support check", what);
      // Every engine the heuristics offer is built; the first call times them and keeps the fastest (see run).
      check_fe(g->build_plans(fe::BuildPlanPolicy_t::ALL), "plan build", what);
      e->workspace_bytes = g->get_autotune_workspace_size();
      e->graph = std::move(g);
      it = cache_.emplace(key, std::move(e)).first;
    } catch (const Error& err) {
      if (err.status().code() != StatusCode::kUnimplemented) throw;
      PD_LOG(kDebug, "attention: cuDNN SDPA refused (", err.what(), "); using the GEMM path for this configuration");
      it = cache_.emplace(key, std::make_unique<Entry>()).first;
    }
  }

  Entry& e = *it->second;
  if (!e.graph) return false;
  e.pack[kUidQ] = q.data();
  e.pack[kUidK] = k.data();
  e.pack[kUidV] = v.data();
  e.pack[kUidO] = out.data();
  if (key.lse) e.pack[kUidStats] = lse.data();
  ScopedBlock ws{alloc};
  if (e.workspace_bytes > 0) ws.ptr = alloc.allocate(size_t(e.workspace_bytes));
  if (!e.tuned) {
    // The heuristics' first choice is not always the fastest engine for FLUX's long sequences; timing each
    // candidate once per shape (it synchronises the device, so only on first use) picks the winner.
    check_fe(e.graph->autotune(static_cast<cudnnHandle_t>(handle_), e.pack, ws.ptr), "autotuning", describe());
    e.tuned = true;
  }
  fe::error_t st = e.graph->execute(static_cast<cudnnHandle_t>(handle_), e.pack, ws.ptr);
  if (!st.is_good()) check_fe(st, "execution", describe());
  return true;
}

}  // namespace paradit::cuda
