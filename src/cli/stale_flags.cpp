#include "cli/stale_flags.h"

#include "paradit/core/status.h"

namespace paradit::cli {

void add_stale_options(ArgParser& p, StaleArgs& a) {
  p.option("pipefusion", "", &a.pipefusion,
           "PipeFusion stages (mesh dim pp): the blocks cut into N stages, each GPU holding ~1/N of the weights");
  p.option("pipefusion-split", "", &a.split,
           "first block of every stage but the first (e.g. 10,30 for 3 stages); default: balanced by FLOPs");
  p.option("patches", "", &a.patches, "PipeFusion: image bands flowing through the stages (any count); 0: = stages");
  p.option("warmup-steps", "", &a.warmup_steps,
           "PipeFusion / patch parallel: first steps run exactly (= --steps: the exact image)");
  p.option("patch-parallel", "", &a.patch_parallel,
           "DistriFusion-style patch parallel over N ranks: stale remote K/V, refreshed asynchronously");
}

void apply_stale_args(const StaleArgs& a, MeshRequest& mesh, EngineOptions& options) {
  PD_REQUIRE(a.pipefusion >= 1 && a.patch_parallel >= 1 && a.patches >= 0,
             "--pipefusion and --patch-parallel must be >= 1 and --patches >= 0");
  PD_REQUIRE(a.warmup_steps >= 1, "--warmup-steps ", a.warmup_steps,
             ": PipeFusion and patch parallel need at least 1 (the first step fills every block's K/V)");
  const bool pipefusion = a.pipefusion > 1, patch = a.patch_parallel > 1;
  PD_REQUIRE(!(pipefusion && patch), "--pipefusion and --patch-parallel cannot be combined: PipeFusion cuts the "
             "blocks, patch parallel the image over all blocks; use one, with --ulysses/--ring/--cfg-parallel/--dp");
  PD_REQUIRE(pipefusion || (a.split.empty() && a.patches == 0),
             "--pipefusion-split and --patches are PipeFusion's: add --pipefusion N (N >= 2)");
  if (patch) {
    PD_REQUIRE(mesh.ulysses == 0 && mesh.ring == 0, "--patch-parallel N takes the sequence-parallel ranks itself: ",
               "drop --ulysses/--ring (combine it with --cfg-parallel or --dp)");
    mesh.ring = a.patch_parallel;
  }
  mesh.pp = a.pipefusion;
  options.pipefusion_split = a.split;
  options.pipeline.stale.patches = a.patches;
  options.pipeline.stale.warmup_steps = a.warmup_steps;
  options.pipeline.stale.patch_parallel = patch;
}

std::string approximation_note(const StaleArgs& a, int steps) {
  if ((a.pipefusion == 1 && a.patch_parallel == 1) || a.warmup_steps >= steps) return "";
  const std::string method = a.pipefusion > 1 ? "PipeFusion" : "patch parallel";
  return method + " is approximate: " + std::to_string(steps - a.warmup_steps) + " of " + std::to_string(steps) +
         " steps attend to stale K/V (--warmup-steps " + std::to_string(steps) + " gives the exact image)";
}

}  // namespace paradit::cli
