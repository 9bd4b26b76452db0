// Engine: FLUX.1 text-to-image over a device mesh, one worker per rank (DESIGN.md, "Execution model").
//
// Every rank is a long-lived worker thread with its own backend — a CPU backend (CPU ranks, the in-process
// transport: how CI runs every parallel method) or GPU i (NCCL) — and its own FluxPipeline loaded from the same
// sources. A request runs SPMD: every rank calls FluxPipeline::generate_rank with its RankContext, and the
// ranks' shares are merged into one FluxResult, the same images as one device would give.
//
// Started by an MPI launcher (mpirun, srun: mpi_launch_size() > 1), each process runs one rank (its MPI rank) of
// a world spanning the processes, whose mesh degrees must multiply to the process count; world rank 0 gathers
// the results.
//
// Failures never hang: a rank that throws aborts its world communicator, which makes every other rank's pending
// and next collective throw. generate() then throws the failing rank's error, naming the rank, makes fresh
// communicators and is ready for the next request.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/core/status.h"
#include "paradit/parallel/device_mesh.h"
#include "paradit/pipeline/flux_pipeline.h"

namespace paradit {

struct EngineOptions {
  // "cpu": CPU ranks. "cuda": rank i on GPU i. "auto": GPUs when there are enough, CPU ranks when there is no GPU.
  // With a single rank, anything create_backend takes ("cuda:N" included).
  std::string device = "auto";
  MeshDegrees mesh;           // the world is their product
  int threads_per_rank = 0;   // CPU ranks: 0 shares the machine's cores evenly (at least one each)
  FluxPipelineSources sources;
  FluxPipelineOptions pipeline;  // encodes_prompts and stale.blocks are set per rank
  // PipeFusion (mesh.pp > 1): the first block of every stage but the first; empty: stages balanced by FLOPs.
  std::vector<int> pipefusion_split;
  // Makes rank r's backend, on rank r's worker thread; unset: from device and threads_per_rank. For devices of
  // one's own, and for tests that make one rank fail.
  std::function<std::unique_ptr<Backend>(int rank)> make_backend;
  // Makes rank r's pipeline on its backend; unset: FluxPipeline::load from `sources`. For pipelines of random
  // weights (benchmarks: FluxPipeline::random).
  std::function<std::unique_ptr<FluxPipeline>(Backend& backend, int rank, const FluxPipelineOptions& options)>
      make_pipeline;
  // The transformer's config, which PipeFusion's stage split needs before any rank loads; unset: read from
  // `sources` (set it with make_pipeline).
  std::optional<FluxConfig> transformer_config;
};

// One rank's device memory.
struct RankMemory {
  size_t transformer_weight_bytes = 0;  // its share of the transformer under tensor parallelism
  size_t weight_bytes = 0;              // every network's weights it holds now
  // The high-water mark of device memory in use during the last request (weights included), where the backend
  // can tell (CUDA); none before the first request or on CPU ranks.
  std::optional<size_t> peak_bytes;
};

class Engine {
 public:
  // Checks the mesh against the devices, starts the workers, makes each rank's backend, loads the pipeline on
  // every rank and connects them. Throws the first failure (naming its rank).
  static std::unique_ptr<Engine> create(const EngineOptions& options);
  virtual ~Engine() = default;

  virtual const DeviceMesh& mesh() const = 0;
  // Rank 0's backend ("cuda:0 NVIDIA H100 …"); for several ranks with the mesh: "4 ranks (--ulysses 2 --ring 2),
  // rank 0 on cpu (1 thread)".
  virtual std::string device_name() const = 0;
  virtual DType compute_dtype() const = 0;
  virtual FluxVariant variant() const = 0;
  virtual const std::string& model_name() const = 0;
  virtual double load_seconds() const = 0;  // wall time of create()
  // Whether this process reports the results: true, except on the processes other than world rank 0 of an MPI
  // launch, whose generate() returns an empty FluxResult once their ranks' shares reached rank 0.
  virtual bool leads() const = 0;

  // One request over every rank; one at a time (concurrent calls wait their turn). Refuses a CFG-parallel
  // mesh for a request without true CFG. `progress` is called for every image, from the rank that decodes it,
  // one call at a time; an exception thrown from it fails the request like a failing rank.
  virtual FluxResult generate(const FluxRequest& request, const FluxProgressCallback& progress = {}) = 0;
  // Every rank's outcome of the last request: Ok, its own error, or kCancelled by another rank's failure.
  virtual std::vector<Status> last_outcomes() const = 0;
  // Every rank's device memory, by world rank.
  virtual std::vector<RankMemory> memory() const = 0;
};

}  // namespace paradit
