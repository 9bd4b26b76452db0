// `paradit generate`'s flags for the methods that keep K/V across steps: --pipefusion, --pipefusion-split,
// --patches, --warmup-steps, --patch-parallel.
#pragma once

#include <string>
#include <vector>

#include "cli/args.h"
#include "paradit/runtime/engine.h"
#include "paradit/runtime/mesh_plan.h"

namespace paradit::cli {

struct StaleArgs {
  int pipefusion = 1, patches = 0, warmup_steps = 1, patch_parallel = 1;
  std::vector<int> split;
};

void add_stale_options(ArgParser& p, StaleArgs& a);
// Refuses impossible combinations before loading (saying what works) and puts the degrees into the mesh request:
// --pipefusion N is the mesh's pp dimension, --patch-parallel N its sequence-parallel group (ring N).
void apply_stale_args(const StaleArgs& a, MeshRequest& mesh, EngineOptions& options);
// For a run of `steps` steps: empty when the result is exact, else a sentence saying it is approximate.
std::string approximation_note(const StaleArgs& a, int steps);

}  // namespace paradit::cli
