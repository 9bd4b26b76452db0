// The Engine: workers, their backends and pipelines, the communicators that connect them, and recovery.
#include "paradit/runtime/engine.h"

#include <chrono>
#include <mutex>

#include "paradit/backend/cuda_backend.h"
#include "paradit/comm/mpi.h"
#include "paradit/core/log.h"
#include "paradit/core/status.h"
#include "paradit/models/flux_cost.h"
#include "paradit/parallel/mesh_groups.h"
#include "paradit/parallel/pipefusion_schedule.h"
#include "paradit/parallel/rank_context.h"
#include "paradit/runtime/mesh_plan.h"
#include "runtime/gather_results.h"
#include "runtime/merge_results.h"
#include "runtime/rank_backends.h"
#include "runtime/rank_workers.h"
#include "runtime/world.h"

namespace paradit {
namespace runtime {
namespace {

// The sequence PipeFusion's stages are balanced for (1024², 512 T5 tokens): the costs of both block kinds scale
// alike with it, so the split barely depends on it.
constexpr int64_t kBalanceImageTokens = 4096, kBalanceTextTokens = 512;

// "ulysses 1, ring 0" for the rank's coordinates along the dimensions of the mesh above 1.
std::string coords_str(const DeviceMesh& mesh, int rank) {
  std::string s;
  for (MeshDim d : kAllMeshDims)
    if (mesh.degree(d) > 1)
      s += (s.empty() ? "" : ", ") + std::string(mesh_dim_name(d)) + " " + std::to_string(mesh.coord(rank, d));
  return s;
}

// The error that stopped a run. When every rank refused the same way (a bad request), that refusal as it is;
// otherwise the first failure that is not a cancellation caused by another rank's (else the first failure),
// naming its rank (outcomes[i] is world rank first + i). Ok when every rank succeeded.
Status run_failure(const std::vector<Status>& outcomes, const DeviceMesh& mesh, int first_rank) {
  int first = -1, cause = -1;
  bool same = true;
  for (int r = 0; r < int(outcomes.size()); ++r) {
    const Status& s = outcomes[size_t(r)];
    same = same && !s.ok() && s.code() == outcomes[0].code() && s.message() == outcomes[0].message();
    if (s.ok()) continue;
    if (first < 0) first = r;
    if (cause < 0 && s.code() != StatusCode::kCancelled) cause = r;
  }
  if (first < 0) return Status();
  if (same || mesh.world() == 1) return outcomes[0];
  const int i = cause >= 0 ? cause : first, r = first_rank + i;
  const Status& s = outcomes[size_t(i)];
  return Status(s.code(), detail::concat("rank ", r, " of ", mesh.world(), " (", coords_str(mesh, r),
                                         "): ", s.message()));
}

// Which ranks of the world this process runs: all of them (threads), or one under an MPI launch.
struct LocalRanks {
  int first = 0, count = 1;
  bool mpi = false;  // one rank per process: the world spans processes

  static LocalRanks all(int world) { return {0, world, false}; }
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineOptions& options, const DeviceMesh& mesh, BackendFactory make_backend, LocalRanks local)
      : options_(options),
        mesh_(mesh),
        make_backend_(std::move(make_backend)),
        local_(local),
        workers_(local.count),
        ranks_(size_t(local.count)) {}

  // Each rank's state goes on its own thread, where it was made (a GPU backend's context is the thread's).
  ~EngineImpl() override {
    workers_.run([&](int r) {
      Rank& rank = ranks_[size_t(r)];
      rank.groups.reset();
      rank.world.reset();
      rank.pipeline.reset();
      rank.backend.reset();
    });
  }

  // Backends and pipelines (no collective: a failing rank cannot block the others), then the communicators.
  void start() {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int> stages = pipefusion_stages();
    throw_if_failed(run([&](int r) {
      Rank& rank = ranks_[size_t(r)];
      rank.backend = make_backend_(local_.first + r);
      FluxPipelineOptions o = options_.pipeline;
      const int g = local_.first + r;  // the world rank (several processes: this process's ranks are a slice)
      o.encodes_prompts = g == flux_prompt_encoder_rank(mesh_);
      if (!stages.empty()) {
        const int s = mesh_.coord(g, MeshDim::kPp);
        o.stale.blocks = {stages[size_t(s)], stages[size_t(s) + 1]};
      }
      o.tensor_parallel = {mesh_.coord(g, MeshDim::kTp), mesh_.degree(MeshDim::kTp)};
      rank.pipeline = options_.make_pipeline ? options_.make_pipeline(*rank.backend, g, o)
                                             : FluxPipeline::load(*rank.backend, options_.sources, o);
    }));
    connect();
    load_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (mesh_.world() > 1)
      PD_LOG(kInfo, "engine: ", device_name(), "; loaded in ", int(load_s_ * 1000), " ms");
  }

  const DeviceMesh& mesh() const override { return mesh_; }
  std::string device_name() const override {
    const std::string first = ranks_[0].backend->name();
    if (mesh_.world() == 1) return first;
    return detail::concat(mesh_.world(), " ranks (", mesh_.degrees().flags(), local_.mpi ? ", MPI" : "", "), rank ",
                          local_.first, " on ", first);
  }
  bool leads() const override { return local_.first == 0; }
  DType compute_dtype() const override { return ranks_[0].backend->compute_dtype(); }
  FluxVariant variant() const override { return ranks_[0].pipeline->variant(); }
  const std::string& model_name() const override { return ranks_[0].pipeline->model_name(); }
  double load_seconds() const override { return load_s_; }

  FluxResult generate(const FluxRequest& request, const FluxProgressCallback& progress) override {
    std::lock_guard lk(mu_);
    require_cfg_parallel_fits(mesh_.degrees(), uses_true_cfg(request));
    if (!connected_) connect();  // an earlier failure left no usable communicators

    std::mutex progress_mu;  // ranks of different data-parallel groups report at once
    FluxProgressCallback serialized;
    if (progress)
      serialized = [&](const FluxProgress& p) {
        std::lock_guard plk(progress_mu);
        progress(p);
      };
    std::vector<FluxRankResult> parts(ranks_.size());
    outcomes_ = run([&](int r) {
      Rank& rank = ranks_[size_t(r)];
      if (CudaBackend* cuda = as_cuda_backend(*rank.backend)) {
        cuda->reset_peak();
        rank.measured_peak = true;
      }
      const RankContext ctx{mesh_, local_.first + r, rank.world.get(), rank.groups.get()};
      parts[size_t(r)] = rank.pipeline->generate_rank(request, ctx, serialized);
    });
    const Status failure = run_failure(outcomes_, mesh_, local_.first);
    if (!failure.ok()) {
      reconnect();
      throw Error(failure);
    }
    if (local_.mpi) {
      const Status gathered = capture([&] { parts = gather_rank_results(*host_world_, request, std::move(parts[0])); });
      if (!gathered.ok()) {
        reconnect();  // the host world is poisoned too
        throw Error(gathered);
      }
      if (!leads()) return FluxResult{};
    }
    return merge_rank_results(request, parts, flux_prompt_encoder_rank(mesh_));
  }

  std::vector<Status> last_outcomes() const override {
    std::lock_guard lk(mu_);
    return outcomes_;
  }

  std::vector<RankMemory> memory() const override {
    std::lock_guard lk(mu_);
    std::vector<RankMemory> out;
    for (const Rank& rank : ranks_) {
      RankMemory m{rank.pipeline->transformer_weight_bytes(), rank.pipeline->weight_bytes(), std::nullopt};
      // Allocator statistics are read under the allocator's lock; the rank's thread is idle between requests.
      if (CudaBackend* cuda = as_cuda_backend(*rank.backend); cuda && rank.measured_peak)
        m.peak_bytes = cuda->peak_bytes();
      out.push_back(m);
    }
    return out;
  }

 private:
  struct Rank {
    std::unique_ptr<Backend> backend;
    std::unique_ptr<FluxPipeline> pipeline;
    std::unique_ptr<Communicator> world;
    std::unique_ptr<MeshGroups> groups;
    bool measured_peak = false;  // a request has run since the peak was reset
  };

  // Runs job on every rank. A rank that throws aborts its world, so every other rank's pending and next
  // collective throws instead of waiting for it.
  std::vector<Status> run(const std::function<void(int)>& job) {
    return workers_.run([&](int r) {
      const Status s = capture([&] { job(r); });
      if (s.ok()) return;
      if (ranks_[size_t(r)].world) ranks_[size_t(r)].world->abort(s.to_string());
      throw Error(s);
    });
  }

  // PipeFusion's stage boundaries (blocks), or none without it.
  std::vector<int> pipefusion_stages() const {
    const int pp = mesh_.degree(MeshDim::kPp);
    if (pp == 1) return {};
    const FluxConfig config =
        options_.transformer_config ? *options_.transformer_config : flux_transformer_config(options_.sources);
    const int blocks = config.num_layers + config.num_single_layers;
    std::vector<int> b =
        options_.pipefusion_split.empty()
            ? balanced_stages(flux_block_flops(config, kBalanceImageTokens, kBalanceTextTokens), pp)
            : explicit_stages(options_.pipefusion_split, blocks, pp);
    std::string s;
    for (int i = 0; i < pp; ++i) s += (i ? ", " : "") + detail::concat("[", b[size_t(i)], ", ", b[size_t(i) + 1], ")");
    PD_LOG(kInfo, "PipeFusion: ", pp, " stages of the ", blocks, " blocks: ", s);
    return b;
  }

  void throw_if_failed(const std::vector<Status>& outcomes) const {
    const Status failure = run_failure(outcomes, mesh_, local_.first);
    if (!failure.ok()) throw Error(failure);
  }

  // A fresh world and each rank's mesh groups split from it.
  void connect() {
    connected_ = false;
    std::vector<Backend*> backends;
    for (Rank& rank : ranks_) {
      rank.groups.reset();
      rank.world.reset();
      backends.push_back(rank.backend.get());
    }
    std::vector<std::unique_ptr<Communicator>> world;
    if (local_.mpi) {
      host_world_.reset();
      host_world_ = create_mpi_world();
      world.push_back(connect_mpi_world(*backends[0], *host_world_));
    } else {
      world = connect_world(backends);
    }
    for (size_t r = 0; r < ranks_.size(); ++r) ranks_[r].world = std::move(world[r]);
    throw_if_failed(run([&](int r) {
      Rank& rank = ranks_[size_t(r)];
      rank.groups = std::make_unique<MeshGroups>(MeshGroups::create(mesh_, *rank.world));
    }));
    connected_ = true;
  }

  // After a failed request: the old communicators are poisoned (and NCCL's aborted); make new ones now, so that
  // the next request does not wait for it. Never throws: if this fails, the next request tries again.
  void reconnect() noexcept {
    const Status s = capture([&] { connect(); });
    if (!s.ok()) PD_LOG(kWarn, "could not reconnect the ranks after a failed request (", s.to_string(), ")");
  }

  const EngineOptions options_;
  const DeviceMesh mesh_;
  BackendFactory make_backend_;
  const LocalRanks local_;
  std::unique_ptr<Communicator> host_world_;  // MPI launch: host tensors between the processes (the results)
  RankWorkers workers_;
  std::vector<Rank> ranks_;
  mutable std::mutex mu_;
  std::vector<Status> outcomes_;
  bool connected_ = false;
  double load_s_ = 0;
};

// Started by an MPI launcher with several processes: this process runs world rank = its MPI rank, and the mesh must
// have exactly one rank per process.
std::unique_ptr<Engine> create_mpi_engine(const EngineOptions& options, const DeviceMesh& mesh, int processes) {
  std::string why;
  PD_REQUIRE(mpi_available(&why), "started by an MPI launcher with ", processes, " processes, but ", why);
  PD_REQUIRE(mesh.world() == processes, "started with ", processes, " MPI processes (one rank each), but ",
             mesh.degrees().flags(), " makes a world of ", mesh.world(), ": give mesh degrees that multiply to ", processes, " (e.g. --ulysses ",
             processes, "), or start ", mesh.world(), " processes");
  const MpiProcess& proc = mpi_process();
  BackendFactory make = options.make_backend ? options.make_backend
                                             : mpi_rank_backend(options.device, options.threads_per_rank,
                                                                proc.local_rank, proc.local_size);
  auto engine = std::make_unique<EngineImpl>(options, mesh, std::move(make), LocalRanks{proc.rank, 1, true});
  engine->start();
  return engine;
}

}  // namespace
}  // namespace runtime

std::unique_ptr<Engine> Engine::create(const EngineOptions& options) {
  const DeviceMesh mesh = DeviceMesh::create(options.mesh, options.mesh.product());
  const int processes = mpi_launch_size();
  if (processes > 1) return runtime::create_mpi_engine(options, mesh, processes);
  runtime::BackendFactory make = options.make_backend
                                     ? options.make_backend
                                     : runtime::rank_backends(options.device, options.threads_per_rank, mesh);
  auto engine = std::make_unique<runtime::EngineImpl>(options, mesh, std::move(make),
                                                      runtime::LocalRanks::all(mesh.world()));
  engine->start();
  return engine;
}

}  // namespace paradit
