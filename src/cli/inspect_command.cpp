// `paradit inspect PATH`: what a FLUX.1 checkpoint is (layout, variant, config, size) — or why it cannot load.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "paradit/core/status.h"
#include "paradit/io/flux_checkpoint.h"

namespace paradit::cli {

int inspect_command(int argc, char** argv, int first) {
  std::string config_json;
  ArgParser p("inspect PATH", "Describes a FLUX.1 transformer checkpoint and checks every tensor's shape.");
  p.option("config", "", &config_json, "diffusers config.json to use with a single file");
  PD_REQUIRE(first < argc, "inspect needs a PATH (a diffusers folder or a .safetensors file)");
  const std::string path = argv[first];
  if (path == "--help" || path == "-h" || !p.parse(argc, argv, first + 1)) {
    std::printf("%s", p.usage().c_str());
    return 0;
  }
  FluxCheckpoint ckpt = FluxCheckpoint::open(path, config_json);
  const FluxConfig& c = ckpt.config();
  size_t params = 0;
  for (const auto& [name, shape] : c.tensor_shapes()) {
    ckpt.get(name);  // validates presence and shape
    params += size_t(shape_numel(shape));
  }
  std::printf("%s: FLUX.1-%s transformer, %s layout\n", ckpt.source().c_str(), c.guidance_embeds ? "dev" : "schnell",
              ckpt.layout().c_str());
  std::printf("  blocks: %d double + %d single; hidden %d (%d heads x %d); joint %d; pooled %d; rope axes %d/%d/%d\n",
              c.num_layers, c.num_single_layers, c.hidden(), c.num_attention_heads, c.attention_head_dim,
              c.joint_attention_dim, c.pooled_projection_dim, c.axes_dims_rope[0], c.axes_dims_rope[1],
              c.axes_dims_rope[2]);
  std::printf("  parameters: %.3f B (all %zu tensors present with the expected shapes)\n", double(params) / 1e9,
              c.tensor_shapes().size());
  return 0;
}

}  // namespace paradit::cli
