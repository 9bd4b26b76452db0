// DeviceMesh: how the world's ranks are arranged over the parallel methods.
//
// Six dimensions, fastest-varying first: tp, ulysses, ring, pp, cfg, dp, so that
//   rank = tp + T·(ulysses + U·(ring + R·(pp + P·(cfg + C·dp)))).
// Neighbouring ranks (one node) share the bandwidth-hungry groups (tensor parallel, Ulysses all-to-all); ring
// and pipeline links may cross nodes. A group along some dimensions is the set of ranks that differ only in
// those coordinates; its members are ordered by the same rule (first dimension fastest), so the sequence-parallel
// group {ulysses, ring} numbers its ranks sp = ulysses + U·ring.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace paradit {

enum class MeshDim { kTp = 0, kUlysses, kRing, kPp, kCfg, kDp };
inline constexpr int kMeshDims = 6;
inline constexpr std::array<MeshDim, kMeshDims> kAllMeshDims = {MeshDim::kTp, MeshDim::kUlysses, MeshDim::kRing,
                                                                MeshDim::kPp, MeshDim::kCfg,     MeshDim::kDp};
const char* mesh_dim_name(MeshDim d);  // "tp", "ulysses", "ring", "pp", "cfg", "dp" (also the CLI flags' names)

using MeshCoords = std::array<int, kMeshDims>;

struct MeshDegrees {
  int tp = 1, ulysses = 1, ring = 1, pp = 1, cfg = 1, dp = 1;

  int& operator[](MeshDim d);
  int operator[](MeshDim d) const;
  int product() const;
  bool operator==(const MeshDegrees&) const = default;
  // The dimensions above 1, as the CLI's flags: "--ulysses 2 --ring 2 --cfg-parallel" ("--ulysses 1" for a single
  // rank).
  std::string flags() const;
};

class DeviceMesh {
 public:
  // Refuses (Error kInvalidArgument) degrees that are not positive, a cfg degree other than 1 or 2, or a
  // product that is not the world size — saying which meshes of that world would work, e.g.
  // "ulysses 3 × ring 2 = 6 ranks but the world is 4: try --ulysses 2 --ring 2 or --ulysses 4".
  static DeviceMesh create(const MeshDegrees& degrees, int world);

  const MeshDegrees& degrees() const { return degrees_; }
  int degree(MeshDim d) const { return degrees_[d]; }
  int world() const { return world_; }
  int sp() const { return degrees_.ulysses * degrees_.ring; }

  MeshCoords coords(int rank) const;
  int coord(int rank, MeshDim d) const { return coords(rank)[int(d)]; }
  int rank_of(const MeshCoords& c) const;

  // The members of rank's group along `dims`, by group rank (the first of `dims` in mesh order varies fastest).
  std::vector<int> group(int rank, const std::vector<MeshDim>& dims) const;
  // rank's index in that group.
  int group_rank(int rank, const std::vector<MeshDim>& dims) const;
  // Which of the world's groups along `dims` holds rank (0 .. world/group size − 1): the color of a split.
  int group_index(int rank, const std::vector<MeshDim>& dims) const;

  std::string str() const;  // "tp 1 × ulysses 2 × ring 2 × pp 1 × cfg 2 × dp 1"

 private:
  DeviceMesh(const MeshDegrees& degrees, int world) : degrees_(degrees), world_(world) {}
  MeshDegrees degrees_;
  int world_;
};

// A sensible mesh for `world` ranks and a model with `heads` attention heads. The degrees set in `fixed`
// other than ulysses and ring (tp, pp, cfg, dp) are kept; the remaining sequence-parallel degree goes to
// Ulysses as far as it divides the head count (all-to-all is cheapest within a node), the rest to Ring.
DeviceMesh auto_mesh(int world, int heads, const MeshDegrees& fixed = {});

}  // namespace paradit
