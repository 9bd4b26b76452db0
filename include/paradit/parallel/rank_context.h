// One rank's place in a parallel run: its coordinates in the mesh and the communicators of its groups.
//
// Every rank runs the same code (SPMD) with its own RankContext; the pipeline or model it is passed to was loaded
// on the rank's own backend, so the backend is not repeated here.
#pragma once

#include "paradit/comm/communicator.h"
#include "paradit/parallel/device_mesh.h"
#include "paradit/parallel/mesh_groups.h"

namespace paradit {

struct RankContext {
  DeviceMesh mesh;
  int rank = 0;                       // in the world (= the mesh rank)
  Communicator* world = nullptr;      // world->rank() == rank
  const MeshGroups* groups = nullptr;  // split from *world for mesh

  int coord(MeshDim d) const { return mesh.coord(rank, d); }
};

}  // namespace paradit
