// DeviceMesh: every factorisation of worlds up to 8, group membership in the documented order, refusals that
// say what would work, auto_mesh, and the communicators MeshGroups splits for each group.
#include <algorithm>
#include <set>

#include "paradit/comm/in_process.h"
#include "paradit/parallel/device_mesh.h"
#include "paradit/parallel/mesh_groups.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr int kMaxWorld = 8;

// Every degree tuple with entries in [1, world] whose product is world (cfg unrestricted: create decides).
std::vector<MeshDegrees> factorizations(int world) {
  std::vector<MeshDegrees> out;
  for (int tp = 1; tp <= world; ++tp)
    for (int u = 1; u <= world; ++u)
      for (int r = 1; r <= world; ++r)
        for (int pp = 1; pp <= world; ++pp)
          for (int cfg = 1; cfg <= world; ++cfg)
            for (int dp = 1; dp <= world; ++dp)
              if (tp * u * r * pp * cfg * dp == world) out.push_back({tp, u, r, pp, cfg, dp});
  return out;
}

std::string refusal(const MeshDegrees& d, int world) {
  try {
    DeviceMesh::create(d, world);
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
    return e.status().message();
  }
  ADD_FAILURE() << "mesh " << d.flags() << " accepted for world " << world;
  return {};
}

TEST(Mesh, EveryFactorizationHasConsistentCoordsAndGroups) {
  int meshes = 0;
  for (int world = 1; world <= kMaxWorld; ++world) {
    for (const MeshDegrees& d : factorizations(world)) {
      SCOPED_TRACE(d.flags() + " world " + std::to_string(world));
      if (d.cfg > 2) {
        EXPECT_NE(refusal(d, world).find("--cfg"), std::string::npos);
        continue;
      }
      const DeviceMesh mesh = DeviceMesh::create(d, world);
      ++meshes;
      for (int rank = 0; rank < world; ++rank) {
        const MeshCoords c = mesh.coords(rank);
        // Fastest-varying first: tp, ulysses, ring, pp, cfg, dp.
        const int formula = c[0] + d.tp * (c[1] + d.ulysses * (c[2] + d.ring * (c[3] + d.pp * (c[4] + d.cfg * c[5]))));
        EXPECT_EQ(formula, rank);
        EXPECT_EQ(mesh.rank_of(c), rank);
        for (MeshDim dim : kAllMeshDims) {
          const std::vector<int> g = mesh.group(rank, {dim});
          ASSERT_EQ(int(g.size()), d[dim]);
          for (int i = 0; i < int(g.size()); ++i) {
            // Member i differs from rank only in this coordinate, which is i.
            MeshCoords want = c;
            want[int(dim)] = i;
            EXPECT_EQ(mesh.coords(g[i]), want);
            EXPECT_EQ(mesh.group_rank(g[i], {dim}), i);
            EXPECT_EQ(mesh.group_index(g[i], {dim}), mesh.group_index(rank, {dim}));
          }
          EXPECT_EQ(g[mesh.group_rank(rank, {dim})], rank);
        }
        // Sequence-parallel group: sp rank = ulysses + U·ring.
        const std::vector<int> sp = mesh.group(rank, {MeshDim::kRing, MeshDim::kUlysses});
        ASSERT_EQ(int(sp.size()), mesh.sp());
        for (int s = 0; s < mesh.sp(); ++s) {
          EXPECT_EQ(mesh.coord(sp[s], MeshDim::kUlysses), s % d.ulysses);
          EXPECT_EQ(mesh.coord(sp[s], MeshDim::kRing), s / d.ulysses);
        }
      }
      // The groups along each dimension partition the world, their indices numbered 0..count-1.
      for (MeshDim dim : kAllMeshDims) {
        std::set<int> indices;
        for (int rank = 0; rank < world; ++rank) indices.insert(mesh.group_index(rank, {dim}));
        EXPECT_EQ(int(indices.size()), world / d[dim]);
        EXPECT_EQ(*indices.rbegin(), world / d[dim] - 1);
      }
    }
  }
  EXPECT_GT(meshes, 100);
}

TEST(Mesh, XDiTExampleGroups) {
  // parallel-methods.md §1: 8 GPUs, ulysses 2, ring 2, cfg 2.
  const DeviceMesh mesh = DeviceMesh::create({.ulysses = 2, .ring = 2, .cfg = 2}, 8);
  EXPECT_EQ(mesh.group(5, {MeshDim::kUlysses}), (std::vector<int>{4, 5}));
  EXPECT_EQ(mesh.group(1, {MeshDim::kRing}), (std::vector<int>{1, 3}));
  EXPECT_EQ(mesh.group(6, {MeshDim::kRing}), (std::vector<int>{4, 6}));
  EXPECT_EQ(mesh.group(2, {MeshDim::kCfg}), (std::vector<int>{2, 6}));
  EXPECT_EQ(mesh.group(7, {MeshDim::kUlysses, MeshDim::kRing}), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(mesh.str(), "tp 1 × ulysses 2 × ring 2 × pp 1 × cfg 2 × dp 1");
}

TEST(Mesh, RefusalsSayWhatWouldWork) {
  const std::string m = refusal({.ulysses = 3, .ring = 2}, 4);
  EXPECT_NE(m.find("ulysses 3 × ring 2 = 6 ranks but the world is 4"), std::string::npos) << m;
  EXPECT_NE(m.find("try --ulysses 2 --ring 2, --ulysses 4"), std::string::npos) << m;

  const std::string cfg = refusal({.ulysses = 2, .cfg = 2}, 3);
  EXPECT_NE(cfg.find("ulysses 2 × cfg 2 = 4 ranks but the world is 3: try --ulysses 3"), std::string::npos) << cfg;

  const std::string small = refusal({}, 4);
  EXPECT_NE(small.find("a single-rank mesh = 1 rank but the world is 4: try --ulysses 4"), std::string::npos) << small;

  const std::string big = refusal({.ulysses = 8}, 1);
  EXPECT_NE(big.find("try --ulysses 1"), std::string::npos) << big;

  EXPECT_NE(refusal({.cfg = 4}, 4).find("degree is 1 or 2"), std::string::npos);
  EXPECT_NE(refusal({.ring = 0}, 4).find("--ring 0"), std::string::npos);
  EXPECT_THROW(DeviceMesh::create({}, 0), Error);
  EXPECT_THROW(DeviceMesh::create({}, 1).coords(1), Error);
}

TEST(Mesh, AutoMeshPrefersUlyssesWhereHeadsDivide) {
  auto degrees = [](int world, int heads, MeshDegrees fixed = {}) { return auto_mesh(world, heads, fixed).degrees(); };
  EXPECT_EQ(degrees(8, 24), (MeshDegrees{.ulysses = 8}));
  EXPECT_EQ(degrees(6, 24), (MeshDegrees{.ulysses = 6}));
  EXPECT_EQ(degrees(5, 24), (MeshDegrees{.ring = 5}));
  EXPECT_EQ(degrees(7, 24), (MeshDegrees{.ring = 7}));
  EXPECT_EQ(degrees(8, 3), (MeshDegrees{.ring = 8}));
  EXPECT_EQ(degrees(6, 3), (MeshDegrees{.ulysses = 3, .ring = 2}));
  EXPECT_EQ(degrees(8, 2), (MeshDegrees{.ulysses = 2, .ring = 4}));
  EXPECT_EQ(degrees(8, 24, {.cfg = 2}), (MeshDegrees{.ulysses = 4, .cfg = 2}));
  EXPECT_EQ(degrees(1, 24), MeshDegrees{});
  EXPECT_THROW(auto_mesh(3, 24, {.cfg = 2}), Error);
  EXPECT_THROW(auto_mesh(4, 0), Error);
}

// Runs MeshGroups::create on every rank and checks each group's communicator against the mesh, then sums
// world ranks over each group to prove the members talk to each other.
void check_mesh_groups(const DeviceMesh& mesh) {
  InProcessGroup world(mesh.world());
  const auto outcomes = run_ranks(world, [&](Communicator& c) {
    const MeshGroups g = MeshGroups::create(mesh, c);
    const int rank = c.rank();
    for (MeshDim dim : kAllMeshDims) {
      Communicator& comm = g[dim];
      EXPECT_EQ(comm.members(), mesh.group(rank, {dim})) << mesh_dim_name(dim);
      EXPECT_EQ(comm.rank(), mesh.group_rank(rank, {dim}));
      EXPECT_EQ(comm.name(), mesh_dim_name(dim));
      Tensor t = Tensor::empty({1}, DType::kF32, cpu_allocator());
      t.data_as<float>()[0] = float(rank);
      comm.all_reduce(t);
      int want = 0;
      for (int m : mesh.group(rank, {dim})) want += m;
      EXPECT_EQ(t.data_as<float>()[0], float(want)) << mesh_dim_name(dim);
    }
    EXPECT_EQ(g.sp->members(), mesh.group(rank, {MeshDim::kUlysses, MeshDim::kRing}));
    EXPECT_EQ(g.sp->rank(), g.ulysses->rank() + mesh.degree(MeshDim::kUlysses) * g.ring->rank());
  });
  for (size_t r = 0; r < outcomes.size(); ++r) EXPECT_TRUE(outcomes[r].ok()) << outcomes[r].to_string();
}

TEST(Mesh, GroupCommunicatorsMatchTheMesh) {
  for (int world = 1; world <= kMaxWorld; ++world)
    for (const MeshDegrees& d : factorizations(world)) {
      if (d.cfg > 2) continue;
      SCOPED_TRACE(d.flags() + " world " + std::to_string(world));
      check_mesh_groups(DeviceMesh::create(d, world));
    }
}

TEST(Mesh, GroupCommunicatorsRefuseAWrongWorld) {
  InProcessGroup world(4);
  const DeviceMesh mesh = DeviceMesh::create({.ulysses = 2}, 2);
  auto c = world.communicator(0);
  EXPECT_THROW(MeshGroups::create(mesh, *c), Error);
}

}  // namespace
}  // namespace paradit
