#include "paradit/parallel/mesh_groups.h"

#include "paradit/core/status.h"

namespace paradit {

namespace {

std::unique_ptr<Communicator> split_group(const DeviceMesh& mesh, Communicator& world, const std::vector<MeshDim>& dims,
                                          const char* name) {
  const int r = world.rank();
  auto comm = world.split(mesh.group_index(r, dims), mesh.group_rank(r, dims), name);
  std::vector<int> expected;
  for (int m : mesh.group(r, dims)) expected.push_back(world.members()[m]);
  PD_CHECK(comm != nullptr && comm->members() == expected, "the ", name, " group disagrees with the mesh");
  return comm;
}

}  // namespace

MeshGroups MeshGroups::create(const DeviceMesh& mesh, Communicator& world) {
  PD_REQUIRE(world.size() == mesh.world(), "mesh ", mesh.str(), " is for ", mesh.world(),
             " ranks but the world communicator has ", world.size());
  MeshGroups g;
  g.tp = split_group(mesh, world, {MeshDim::kTp}, "tp");
  g.ulysses = split_group(mesh, world, {MeshDim::kUlysses}, "ulysses");
  g.ring = split_group(mesh, world, {MeshDim::kRing}, "ring");
  g.sp = split_group(mesh, world, {MeshDim::kUlysses, MeshDim::kRing}, "sp");
  g.pp = split_group(mesh, world, {MeshDim::kPp}, "pp");
  g.cfg = split_group(mesh, world, {MeshDim::kCfg}, "cfg");
  g.dp = split_group(mesh, world, {MeshDim::kDp}, "dp");
  g.vae = split_group(mesh, world, {MeshDim::kTp, MeshDim::kUlysses, MeshDim::kRing, MeshDim::kCfg}, "vae");
  return g;
}

Communicator& MeshGroups::operator[](MeshDim d) const {
  switch (d) {
    case MeshDim::kTp: return *tp;
    case MeshDim::kUlysses: return *ulysses;
    case MeshDim::kRing: return *ring;
    case MeshDim::kPp: return *pp;
    case MeshDim::kCfg: return *cfg;
    case MeshDim::kDp: return *dp;
  }
  PD_THROW(kInternal, "bad mesh dimension ", int(d));
}

}  // namespace paradit
