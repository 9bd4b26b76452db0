// Finding models/tiny-flux, the random pipeline that `paradit generate` runs when given no model.
#include <filesystem>
#include <system_error>
#include <vector>

#include "paradit/core/status.h"
#include "paradit/pipeline/flux_pipeline.h"

namespace paradit {
namespace {

namespace fs = std::filesystem;

constexpr const char* kEmbeddedModel = "tiny-flux";

// Installed or copied binaries find the model beside them; a binary in a build folder finds it in the source tree
// it was built from. __FILE__ is the absolute path of this file as CMake passes it to the compiler, so the source
// tree's location is fixed at build time.
std::vector<fs::path> candidates() {
  std::vector<fs::path> dirs;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path bin = exe.parent_path();
    dirs.push_back(bin / "models" / kEmbeddedModel);
    dirs.push_back(bin.parent_path() / "models" / kEmbeddedModel);
    dirs.push_back(bin.parent_path() / "share" / "paradit" / "models" / kEmbeddedModel);
  }
  const fs::path source_root = fs::path(__FILE__).parent_path().parent_path().parent_path();  // src/pipeline/x.cpp
  dirs.push_back(source_root / "models" / kEmbeddedModel);
  return dirs;
}

}  // namespace

FluxPipelineSources FluxPipelineSources::embedded_default() {
  std::string searched;
  for (const fs::path& dir : candidates()) {
    std::error_code ec;
    if (fs::is_regular_file(dir / "model_index.json", ec)) {
      FluxPipelineSources s;
      s.model_dir = dir.lexically_normal().string();
      s.embedded = true;
      return s;
    }
    searched += (searched.empty() ? "" : ", ") + dir.string();
  }
  PD_THROW(kNotFound, "no model given and the embedded ", kEmbeddedModel, " pipeline was not found (looked in ",
           searched, "); pass --model DIR or the single-file options");
}

bool FluxPipelineSources::empty() const {
  return model_dir.empty() && diffusion_model.empty() && vae.empty() && clip_l.empty() && t5xxl.empty() &&
         clip_tokenizer.empty() && t5_tokenizer.empty() && config_dir.empty();
}

}  // namespace paradit
