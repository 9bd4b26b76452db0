#include "paradit/runtime/mesh_plan.h"

#include <algorithm>

#include "paradit/core/status.h"

namespace paradit {

DeviceMesh plan_mesh(const MeshRequest& request, int heads, bool true_cfg) {
  PD_REQUIRE(request.tp >= 1 && request.ulysses >= 0 && request.ring >= 0 && request.dp >= 1 && request.pp >= 1 &&
                 request.ranks >= 0,
             "mesh degrees must be >= 1 (got --tp ", request.tp, " --ulysses ", request.ulysses, " --ring ",
             request.ring, " --dp ", request.dp, " --pipefusion ", request.pp, ") and the rank count >= 1 (got ",
             request.ranks, ")");
  MeshDegrees m;
  m.tp = request.tp;
  m.ulysses = request.ulysses > 0 ? request.ulysses : 1;
  m.ring = request.ring > 0 ? request.ring : 1;
  m.cfg = request.cfg_parallel ? 2 : 1;
  m.dp = request.dp;
  m.pp = request.pp;
  if (request.ranks == 0) return DeviceMesh::create(m, m.product());
  if (request.ulysses > 0 || request.ring > 0) return DeviceMesh::create(m, request.ranks);

  if (!request.cfg_parallel && true_cfg && request.ranks % (2 * m.tp * m.dp * m.pp) == 0) m.cfg = 2;
  // Ulysses splits a tp rank's heads: the fewest any rank holds (SequenceShard), at least one.
  return auto_mesh(request.ranks, std::max(1, heads / m.tp), m);
}

void require_cfg_parallel_fits(const MeshDegrees& mesh, bool true_cfg) {
  if (mesh.cfg == 1 || true_cfg) return;
  MeshDegrees sequence = mesh, batch = mesh;
  sequence.cfg = batch.cfg = 1;
  sequence.ring *= 2;
  batch.dp *= 2;
  PD_THROW(kInvalidArgument, "CFG parallel runs the positive and the negative prompt side by side, so it needs true ",
           "CFG (a negative prompt and a CFG scale above 1); without it, give its ranks to the sequence (",
           sequence.flags(), ") or the batch (", batch.flags(), ")");
}

}  // namespace paradit
