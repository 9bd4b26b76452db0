#include "cli/sp_flags.h"

#include "paradit/comm/mpi.h"
#include "paradit/core/status.h"

namespace paradit::cli {

void add_sp_tuning_options(ArgParser& p, SpTuningArgs& a) {
  p.option("ulysses-chunks", "", &a.ulysses_chunks,
           "Ulysses: its all-to-alls pipelined over N chunks of heads, one chunk's attention beside the next "
           "chunk's transfer (default 1: measured fastest on 4 x H200 at 1024 and 2048)");
  p.option("ring-kv", "", &a.ring_kv,
           "Ring: pass (K/V blocks handed round the ring, one neighbour at a time), gather (every block sent to "
           "every rank at once, the others' attended in one call) or auto (default: gather on the GPUs of one "
           "machine, where it was measured faster; pass across processes started by MPI, where links are slower)");
}

void apply_sp_tuning_args(const SpTuningArgs& a, EngineOptions& options) {
  PD_REQUIRE(a.ulysses_chunks >= 1, "--ulysses-chunks must be >= 1, got ", a.ulysses_chunks);
  PD_REQUIRE(a.ring_kv == "pass" || a.ring_kv == "gather" || a.ring_kv == "auto",
             "--ring-kv must be pass, gather or auto, got '", a.ring_kv, "'");
  options.pipeline.ulysses_head_chunks = a.ulysses_chunks;
  const bool gather = a.ring_kv == "gather" || (a.ring_kv == "auto" && mpi_launch_size() <= 1);
  options.pipeline.ring_kv = gather ? RingKv::kGather : RingKv::kPass;
}

}  // namespace paradit::cli
