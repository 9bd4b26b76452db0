// The subcommands of the paradit front end; each parses its own options and returns the exit code.
#pragma once

namespace paradit::cli {

int bench_command(int argc, char** argv, int first);
int bench_pipeline_command(int argc, char** argv, int first);  // `bench pipeline` (bench_command dispatches)
int bench_fidelity_command(int argc, char** argv, int first);  // `bench fidelity`
int generate_command(int argc, char** argv, int first);
int inspect_command(int argc, char** argv, int first);

}  // namespace paradit::cli
