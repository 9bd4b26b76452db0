// paradit command line front end: the one place that turns errors into exit codes.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "paradit/core/status.h"

namespace {

const char* kUsage =
    "usage: paradit <command> [options]\n"
    "\n"
    "commands:\n"
    "  generate -p PROMPT  make images with FLUX.1 (no model given: the embedded tiny random pipeline)\n"
    "  bench transformer   time the FLUX.1 transformer forward (random weights of the real shape)\n"
    "  inspect PATH        describe a FLUX.1 checkpoint (diffusers folder or single file)\n"
    "\n"
    "`paradit <command> --help` lists a command's options.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  int rc = 2;
  const paradit::Status st = paradit::capture([&] {
    if (cmd == "generate") rc = paradit::cli::generate_command(argc, argv, 2);
    else if (cmd == "bench") rc = paradit::cli::bench_command(argc, argv, 2);
    else if (cmd == "inspect") rc = paradit::cli::inspect_command(argc, argv, 2);
    else {
      std::fprintf(stderr, "paradit: unknown command '%s'\n%s", cmd.c_str(), kUsage);
      rc = 2;
    }
  });
  if (!st.ok()) {
    std::fprintf(stderr, "paradit %s: %s\n", cmd.c_str(), st.to_string().c_str());
    return st.code() == paradit::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return rc;
}
