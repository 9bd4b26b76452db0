// The sequence-parallel tuning flags `paradit generate` and `paradit bench pipeline` share: --ulysses-chunks and
// --ring-kv.
#pragma once

#include <string>

#include "cli/args.h"
#include "paradit/runtime/engine.h"

namespace paradit::cli {

struct SpTuningArgs {
  int ulysses_chunks = 1;
  std::string ring_kv = "auto";
};

void add_sp_tuning_options(ArgParser& p, SpTuningArgs& a);
// Refuses bad values (saying what works) and puts them into the pipeline options.
void apply_sp_tuning_args(const SpTuningArgs& a, EngineOptions& options);

}  // namespace paradit::cli
