// From what a user asks for (`--tp T --ulysses U --ring R --cfg-parallel --dp D`, or `--gpus N`) to a device mesh.
#pragma once

#include "paradit/parallel/device_mesh.h"

namespace paradit {

struct MeshRequest {
  int tp = 1;                 // tensor parallel: each rank of a tp group holds 1/tp of the transformer
  int ulysses = 0, ring = 0;  // 0: not given
  bool cfg_parallel = false;
  int dp = 1;
  int pp = 1;  // --pipefusion N: pipeline stages (kept as given, like dp)
  int ranks = 0;  // --gpus N: the world size; 0: the product of the degrees
};

// The mesh for `request` and a model with `heads` attention heads:
// - no rank count: the degrees given (those not given are 1); the world is their product;
// - a rank count and Ulysses or Ring degrees: the degrees given, which must multiply to the rank count;
// - a rank count alone: CFG parallel when the requests use true CFG (`true_cfg`) and the ranks left by dp split
//   in two — its one exchange per step is far cheaper than sequence-parallel attention — then auto_mesh: Ulysses
//   as far as it divides the head count (each tp rank's share of it), Ring for the rest. Tensor parallelism
//   is never picked by itself (it all-reduces activations twice per block, dearer than sequence parallelism):
//   --tp is for a model that does not fit one device, and is kept as given.
// Refuses an impossible combination (Error kInvalidArgument), naming meshes of that world that would work.
DeviceMesh plan_mesh(const MeshRequest& request, int heads, bool true_cfg);

// Refuses (Error kInvalidArgument) a CFG-parallel mesh for a request without true CFG, saying what the ranks
// could do instead.
void require_cfg_parallel_fits(const MeshDegrees& mesh, bool true_cfg);

}  // namespace paradit
