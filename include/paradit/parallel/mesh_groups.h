// The communicators of one rank's mesh groups, split from its world communicator.
#pragma once

#include <memory>

#include "paradit/comm/communicator.h"
#include "paradit/parallel/device_mesh.h"

namespace paradit {

struct MeshGroups {
  std::unique_ptr<Communicator> tp, ulysses, ring, sp, pp, cfg, dp;  // sp = {ulysses, ring}
  // {tp, ulysses, ring, cfg}: the ranks that make one image, hold the same final latents and decode them
  // together (parallel VAE);
  // its rank 0 is sp rank 0 of cfg rank 0.
  std::unique_ptr<Communicator> vae;

  // Collective over `world`: every rank calls it with the same mesh. world.rank() is the mesh rank; each group
  // numbers its members as DeviceMesh::group does (the sp group: ulysses + U·ring).
  static MeshGroups create(const DeviceMesh& mesh, Communicator& world);

  Communicator& operator[](MeshDim d) const;
};

}  // namespace paradit
