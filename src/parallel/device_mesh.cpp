#include "paradit/parallel/device_mesh.h"

#include <algorithm>
#include <tuple>

#include "paradit/core/status.h"

namespace paradit {

const char* mesh_dim_name(MeshDim d) {
  switch (d) {
    case MeshDim::kTp: return "tp";
    case MeshDim::kUlysses: return "ulysses";
    case MeshDim::kRing: return "ring";
    case MeshDim::kPp: return "pp";
    case MeshDim::kCfg: return "cfg";
    case MeshDim::kDp: return "dp";
  }
  return "?";
}

namespace {
// The fields of MeshDegrees in mesh order.
constexpr int MeshDegrees::*kDegreeFields[kMeshDims] = {&MeshDegrees::tp, &MeshDegrees::ulysses, &MeshDegrees::ring,
                                                        &MeshDegrees::pp, &MeshDegrees::cfg,     &MeshDegrees::dp};
}  // namespace

int& MeshDegrees::operator[](MeshDim d) { return this->*kDegreeFields[int(d)]; }
int MeshDegrees::operator[](MeshDim d) const { return this->*kDegreeFields[int(d)]; }

int MeshDegrees::product() const { return tp * ulysses * ring * pp * cfg * dp; }

std::string MeshDegrees::flags() const {
  std::string s;
  for (MeshDim d : kAllMeshDims) {
    if ((*this)[d] == 1) continue;
    s += s.empty() ? "--" : " --";
    // The CLI's switch for CFG parallel takes no value (its degree is 2 or nothing).
    // PipeFusion's stages are the pp dimension.
    const std::string flag = d == MeshDim::kPp ? "pipefusion" : mesh_dim_name(d);
    s += d == MeshDim::kCfg && cfg == 2 ? std::string("cfg-parallel") : flag + " " + std::to_string((*this)[d]);
  }
  return s.empty() ? "--ulysses 1" : s;
}

namespace {

constexpr int kMaxCfg = 2;  // CFG parallel splits the [unconditional; conditional] batch in two

std::vector<int> divisors(int n) {
  std::vector<int> d;
  for (int i = 1; i <= n; ++i)
    if (n % i == 0) d.push_back(i);
  return d;
}

// Every mesh of `world` ranks, cfg at most 2.
std::vector<MeshDegrees> all_meshes(int world) {
  std::vector<MeshDegrees> out;
  for (int tp : divisors(world))
    for (int u : divisors(world / tp))
      for (int r : divisors(world / tp / u))
        for (int pp : divisors(world / tp / u / r))
          for (int cfg : divisors(world / tp / u / r / pp)) {
            if (cfg > kMaxCfg) continue;
            out.push_back({tp, u, r, pp, cfg, world / tp / u / r / pp / cfg});
          }
  return out;
}

// Up to three meshes of `world` ranks closest to what was asked: most degrees kept, then changes confined to
// the sequence-parallel degrees (the usual fix), then the most Ulysses.
std::string suggestions(const MeshDegrees& asked, int world) {
  auto rank_key = [&](const MeshDegrees& m) {
    int kept = 0;
    bool only_sp = true;
    for (MeshDim d : kAllMeshDims) {
      if (m[d] == asked[d]) {
        ++kept;
      } else if (d != MeshDim::kUlysses && d != MeshDim::kRing) {
        only_sp = false;
      }
    }
    return std::tuple(kept, only_sp, m.ulysses, m.ring);
  };
  std::vector<MeshDegrees> meshes = all_meshes(world);
  std::stable_sort(meshes.begin(), meshes.end(),
                   [&](const MeshDegrees& a, const MeshDegrees& b) { return rank_key(a) > rank_key(b); });
  const size_t n = std::min<size_t>(3, meshes.size());
  std::string s;
  for (size_t i = 0; i < n; ++i) s += (i == 0 ? "" : i + 1 == n ? " or " : ", ") + meshes[i].flags();
  return s;
}

std::string product_str(const MeshDegrees& m) {
  std::string s;
  for (MeshDim d : kAllMeshDims)
    if (m[d] != 1) s += (s.empty() ? "" : " × ") + std::string(mesh_dim_name(d)) + " " + std::to_string(m[d]);
  return s.empty() ? std::string("a single-rank mesh") : s;
}

// The dimensions sorted in mesh order; duplicates refused.
std::vector<MeshDim> in_mesh_order(const std::vector<MeshDim>& dims) {
  std::vector<MeshDim> s = dims;
  std::sort(s.begin(), s.end());
  PD_REQUIRE(std::adjacent_find(s.begin(), s.end()) == s.end(), "mesh group: a dimension is named twice");
  return s;
}

}  // namespace

DeviceMesh DeviceMesh::create(const MeshDegrees& degrees, int world) {
  PD_REQUIRE(world >= 1, "the world must have at least one rank, got ", world);
  for (MeshDim d : kAllMeshDims)
    PD_REQUIRE(degrees[d] >= 1, "--", mesh_dim_name(d), " ", degrees[d], ": degrees must be >= 1");
  PD_REQUIRE(degrees.cfg <= kMaxCfg, "--cfg ", degrees.cfg,
             ": CFG parallel splits the [unconditional; conditional] batch, so its degree is 1 or 2");
  if (degrees.product() != world) {
    PD_THROW(kInvalidArgument, product_str(degrees), " = ", degrees.product(),
             degrees.product() == 1 ? " rank" : " ranks", " but the world is ", world, ": try ",
             suggestions(degrees, world));
  }
  return DeviceMesh(degrees, world);
}

MeshCoords DeviceMesh::coords(int rank) const {
  PD_REQUIRE(rank >= 0 && rank < world_, "rank ", rank, " out of range for a world of ", world_);
  MeshCoords c{};
  for (MeshDim d : kAllMeshDims) {
    c[int(d)] = rank % degrees_[d];
    rank /= degrees_[d];
  }
  return c;
}

int DeviceMesh::rank_of(const MeshCoords& c) const {
  int rank = 0;
  for (int i = kMeshDims - 1; i >= 0; --i) {
    const MeshDim d = kAllMeshDims[i];
    PD_REQUIRE(c[i] >= 0 && c[i] < degrees_[d], mesh_dim_name(d), " coordinate ", c[i], " out of range for degree ",
               degrees_[d]);
    rank = rank * degrees_[d] + c[i];
  }
  return rank;
}

std::vector<int> DeviceMesh::group(int rank, const std::vector<MeshDim>& dims) const {
  const std::vector<MeshDim> order = in_mesh_order(dims);
  MeshCoords c = coords(rank);
  int n = 1;
  for (MeshDim d : order) n *= degrees_[d];
  std::vector<int> members(n);
  for (int i = 0; i < n; ++i) {
    int rest = i;
    for (MeshDim d : order) {
      c[int(d)] = rest % degrees_[d];
      rest /= degrees_[d];
    }
    members[i] = rank_of(c);
  }
  return members;
}

int DeviceMesh::group_rank(int rank, const std::vector<MeshDim>& dims) const {
  const std::vector<MeshDim> order = in_mesh_order(dims);
  const MeshCoords c = coords(rank);
  int r = 0;
  for (auto it = order.rbegin(); it != order.rend(); ++it) r = r * degrees_[*it] + c[int(*it)];
  return r;
}

int DeviceMesh::group_index(int rank, const std::vector<MeshDim>& dims) const {
  const std::vector<MeshDim> order = in_mesh_order(dims);
  const MeshCoords c = coords(rank);
  int index = 0;
  for (int i = kMeshDims - 1; i >= 0; --i) {
    const MeshDim d = kAllMeshDims[i];
    if (std::find(order.begin(), order.end(), d) == order.end()) index = index * degrees_[d] + c[i];
  }
  return index;
}

std::string DeviceMesh::str() const {
  std::string s;
  for (MeshDim d : kAllMeshDims)
    s += (s.empty() ? "" : " × ") + std::string(mesh_dim_name(d)) + " " + std::to_string(degrees_[d]);
  return s;
}

DeviceMesh auto_mesh(int world, int heads, const MeshDegrees& fixed) {
  PD_REQUIRE(world >= 1, "auto_mesh: the world must have at least one rank, got ", world);
  PD_REQUIRE(heads >= 1, "auto_mesh: heads must be >= 1, got ", heads);
  MeshDegrees m = fixed;
  m.ulysses = m.ring = 1;
  const int others = m.product();
  if (others >= 1 && world % others == 0) {
    const int sp = world / others;
    for (int u : divisors(sp))
      if (heads % u == 0) m.ulysses = u;
    m.ring = sp / m.ulysses;
  }
  return DeviceMesh::create(m, world);  // refuses, with suggestions, when the fixed degrees do not fit
}

}  // namespace paradit
