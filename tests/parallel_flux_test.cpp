// The sequence-parallel FLUX transformer on CPU ranks (threads, in-process communicators, one 1-thread CPU backend
// each) against the single-rank forward: every mesh of world ≤ 8 — ulysses × ring × cfg × dp, where each cfg/dp
// replica runs its own SP forward — on the square (4×4 tokens, T = 8, 3 heads) and non-square (3×5, T = 7,
// 2 heads, batch 2) fixtures. Token counts and head counts that do not divide the degrees, ranks holding only text
// rows, and more ranks than tokens are all covered.
#include <algorithm>
#include <string>
#include <vector>

#include "paradit/comm/in_process.h"
#include "paradit/io/flux_checkpoint.h"
#include "paradit/io/safetensors.h"
#include "paradit/models/flux_transformer.h"
#include "paradit/parallel/mesh_groups.h"
#include "paradit/pipeline/latents.h"
#include "flux_fixture.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kTol = 1e-5;  // parallel vs serial in fp32 (DESIGN.md)

using test::FluxHostInputs;
using test::flux_device_inputs;

std::string mesh_name(const MeshDegrees& m) {
  return "ulysses " + std::to_string(m.ulysses) + " ring " + std::to_string(m.ring) + " cfg " +
         std::to_string(m.cfg) + " dp " + std::to_string(m.dp);
}

// Runs the forward on every rank of `degrees` and checks each SP replica's gathered output against `want`.
void check_mesh(const FluxCheckpoint* ckpt, const FluxConfig& config, uint64_t random_seed, const FluxHostInputs& h,
                const Tensor& want, const MeshDegrees& degrees) {
  SCOPED_TRACE(mesh_name(degrees));
  const DeviceMesh mesh = DeviceMesh::create(degrees, degrees.product());
  const std::vector<MeshDim> sp_dims = {MeshDim::kUlysses, MeshDim::kRing};
  const int replicas = mesh.world() / mesh.sp();
  std::vector<Tensor> got(static_cast<size_t>(replicas));
  for (Tensor& g : got) g = test::poisoned_host({h.B(), h.N(), config.out_channels});

  InProcessGroup group(mesh.world());
  const auto outcomes = run_ranks(group, [&](Communicator& world) {
    auto be = create_cpu_backend(1);
    auto model = ckpt ? FluxTransformer::load(*be, *ckpt) : FluxTransformer::random(*be, config, random_seed);
    const MeshGroups g = MeshGroups::create(mesh, world);
    const FluxParallel sp{g.ulysses.get(), g.ring.get()};
    const FluxShardRows rows = flux_shard_rows(h.T(), h.N(), sp.parts(), sp.part());
    const Tensor out = model->forward(flux_device_inputs(*be, h, rows), sp);
    ASSERT_EQ(out.shape(), (Shape{h.B(), rows.image_count, config.out_channels}));
    // Ranks of one replica write disjoint rows.
    be->copy(got[size_t(mesh.group_index(world.rank(), sp_dims))].slice(1, rows.image_start, rows.image_count), out);
  });
  for (size_t r = 0; r < outcomes.size(); ++r)
    ASSERT_TRUE(outcomes[r].ok()) << "rank " << r << ": " << outcomes[r].to_string();
  for (int i = 0; i < replicas; ++i) EXPECT_LE(test::rel_l2(got[size_t(i)], want), kTol) << "replica " << i;
}

class ParallelFlux : public ::testing::TestWithParam<std::string> {};

TEST_P(ParallelFlux, EveryMeshMatchesTheSingleRankForward) {
  const std::string dir = test::fixtures_dir() + "/" + GetParam();
  const SafetensorsFile io = SafetensorsFile::open(dir + "/io.safetensors");
  const FluxCheckpoint ckpt = FluxCheckpoint::open(dir + "/transformer");
  const FluxHostInputs h = test::flux_host_inputs(io);
  auto be = create_cpu_backend(1);
  auto model = FluxTransformer::load(*be, ckpt);
  const Tensor want = be->download_f32(model->forward(flux_device_inputs(*be, h, {0, h.T(), 0, h.N()})));
  // The single-rank forward is diffusers' (flux_transformer_test); here it is the reference.
  ASSERT_LE(test::rel_l2(want, io.get("output")), kTol);
  for (const MeshDegrees& m : test::every_sp_cfg_dp_mesh()) check_mesh(&ckpt, ckpt.config(), 0, h, want, m);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ParallelFlux, ::testing::Values("flux_dev_tiny", "flux_schnell_tiny"));

TEST(ParallelFlux, MeshListHasEveryWorldUpToEight) {
  const std::vector<MeshDegrees> meshes = test::every_sp_cfg_dp_mesh();
  std::vector<int> per_world(9, 0);
  for (const MeshDegrees& m : meshes) ++per_world[size_t(m.product())];
  // ulysses·ring·dp ordered factorisations, plus those with cfg 2.
  EXPECT_EQ(per_world, (std::vector<int>{0, 1, 4, 3, 9, 3, 12, 3, 16}));
}

TEST(ParallelFlux, MoreRanksThanTokens) {
  // 2 text + 3 image tokens over up to 8 SP ranks: some ranks hold one text row, one image row, or nothing.
  FluxConfig c = FluxCheckpoint::open(test::fixtures_dir() + "/flux_dev_tiny/transformer").config();
  FluxHostInputs h{test::random_host({1, 3, c.in_channels}, 11), test::random_host({1, 2, c.joint_attention_dim}, 12),
               test::random_host({1, c.pooled_projection_dim}, 13), image_ids(1, 3),
               Tensor::empty({2, 3}, DType::kF32, cpu_allocator()), {0.6f}, {3.5f}};
  std::fill_n(h.txt_ids.data_as<float>(), 6, 0.0f);  // FLUX's text ids are zeros
  auto be = create_cpu_backend(1);
  auto model = FluxTransformer::random(*be, c, 7);
  const Tensor want = be->download_f32(model->forward(flux_device_inputs(*be, h, {0, 2, 0, 3})));
  for (const MeshDegrees& m : {MeshDegrees{.ring = 8}, MeshDegrees{.ulysses = 8}, MeshDegrees{.ulysses = 2, .ring = 4},
                               MeshDegrees{.ulysses = 3, .ring = 2}, MeshDegrees{.ring = 6}})
    check_mesh(nullptr, c, 7, h, want, m);
}

TEST(ParallelFlux, ShardRowsCoverTheSequenceOnce) {
  for (int64_t T : {0, 1, 7, 512})
    for (int64_t N : {1, 5, 4096})
      for (int parts = 1; parts <= 8; ++parts) {
        int64_t text = 0, image = 0;
        for (int p = 0; p < parts; ++p) {
          const FluxShardRows r = flux_shard_rows(T, N, parts, p);
          EXPECT_EQ(r.text_start, text) << T << " " << N << " " << parts << " " << p;
          EXPECT_EQ(r.image_start, image) << T << " " << N << " " << parts << " " << p;
          text += r.text_count;
          image += r.image_count;
        }
        EXPECT_EQ(text, T);
        EXPECT_EQ(image, N);
      }
}

TEST(ParallelFlux, RefusesRowsThatAreNotThisRanks) {
  const std::string dir = test::fixtures_dir() + "/flux_dev_tiny";
  const SafetensorsFile io = SafetensorsFile::open(dir + "/io.safetensors");
  const FluxCheckpoint ckpt = FluxCheckpoint::open(dir + "/transformer");
  const FluxHostInputs h = test::flux_host_inputs(io);
  InProcessGroup group(2);
  const auto outcomes = run_ranks(group, [&](Communicator& world) {
    auto be = create_cpu_backend(1);
    auto model = FluxTransformer::load(*be, ckpt);
    const MeshGroups g = MeshGroups::create(DeviceMesh::create({.ring = 2}, 2), world);
    // Every rank passes the whole sequence: its shard is half of it.
    model->forward(flux_device_inputs(*be, h, {0, h.T(), 0, h.N()}), FluxParallel{g.ulysses.get(), g.ring.get()});
  });
  for (const Status& s : outcomes) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_NE(s.message().find("hidden_states"), std::string::npos) << s.to_string();
    EXPECT_NE(s.message().find("SP rank"), std::string::npos) << s.to_string();
  }
}

}  // namespace
}  // namespace paradit
