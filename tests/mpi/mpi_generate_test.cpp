// `mpirun -np 2 paradit generate --device cpu --ulysses 2` (one rank per process, the MPI communicator) against the
// single-process run of the same request: the same PNG within 1/255, written and reported by world rank 0 alone;
// data parallel and PipeFusion (whose prompts another rank encodes) too.
// Not itself started by mpirun: it runs the built binary (PARADIT_CLI) both ways, mpirun as PARADIT_MPIRUN says.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "paradit/io/png.h"
#include "test_util.h"

namespace paradit {
namespace {

struct CliRun {  // one command: exit status and what it printed
  int rc = -1;
  std::string out, err;
};

class MpiGenerate : public test::ScratchDirTest {
 protected:
  // Runs `<launcher> paradit generate ARGS` in the test's folder.
  CliRun generate(const std::string& launcher, const std::string& args) const {
    const std::string cmd = "cd '" + dir_.string() + "' && " + launcher + " '" + PARADIT_CLI + "' generate " + args +
                            " > out.txt 2> err.txt";
    const int status = std::system(cmd.c_str());
    CliRun r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp("out.txt");
    r.err = slurp("err.txt");
    return r;
  }
  // The request in one process (-o one.png), then in two under mpirun with the mesh flags (-o two.png).
  void run_both(const std::string& request, const std::string& mesh, CliRun* mpi) const {
    const CliRun one = generate("", request + " -o one.png");
    ASSERT_EQ(one.rc, 0) << one.err;
    *mpi = generate(PARADIT_MPIRUN " -np 2", request + " " + mesh + " -o two.png");
    ASSERT_EQ(mpi->rc, 0) << mpi->out << mpi->err;
  }
  // The same size and every channel within 1/255.
  void expect_same_png(const std::string& single, const std::string& mpi, int64_t width, int64_t height) const {
    SCOPED_TRACE(single + " vs " + mpi);
    const PngImage a = read_png(path(single)), b = read_png(path(mpi));
    ASSERT_EQ(a.width, width);
    ASSERT_EQ(a.height, height);
    ASSERT_EQ(b.width, a.width);
    ASSERT_EQ(b.height, a.height);
    int worst = 0;
    for (size_t i = 0; i < a.rgb.size(); ++i) worst = std::max(worst, std::abs(int(a.rgb[i]) - int(b.rgb[i])));
    EXPECT_LE(worst, 1) << "pixels differ by up to " << worst << "/255";
  }
  std::string slurp(const std::string& name) const {
    std::ifstream in(dir_ / name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
};

size_t count(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t at = s.find(part); at != std::string::npos; at = s.find(part, at + 1)) ++n;
  return n;
}

TEST_F(MpiGenerate, TwoProcessesWriteTheSingleProcessImage) {
  const std::string request = "-p 'a fox in the snow' --device cpu -W 48 -H 32 --steps 2 --seed 7";
  CliRun two;
  ASSERT_NO_FATAL_FAILURE(run_both(request, "--ulysses 2", &two));
  EXPECT_EQ(count(two.out, "wrote two.png"), 1u) << "only world rank 0 reports: " << two.out;
  EXPECT_NE(two.err.find("engine: 2 ranks (--ulysses 2, MPI)"), std::string::npos) << two.err;
  EXPECT_EQ(count(two.err, "engine: "), 1u) << "only world rank 0 logs: " << two.err;
  expect_same_png("one.png", "two.png", 48, 32);
}

TEST_F(MpiGenerate, DataParallelImagesComeBackToRankZero) {
  // Image 1 is decoded by the process of world rank 1 and written by rank 0.
  const std::string request = "-p 'two owls' --device cpu -W 32 -H 32 --steps 1 -b 2";
  CliRun two;
  ASSERT_NO_FATAL_FAILURE(run_both(request, "--dp 2", &two));
  for (int i : {1, 2}) expect_same_png("one_" + std::to_string(i) + ".png", "two_" + std::to_string(i) + ".png", 32, 32);
}

TEST_F(MpiGenerate, PipeFusionEncodesOnTheLastStageAndItsWarningsReachRankZero) {
  // World rank 1 (the last stage) encodes; the prompt is over 7 T5 tokens, so it warns, and rank 0 reports it.
  const std::string request =
      "-p 'a red fox jumping over a sleeping dog in the deep snow' --device cpu -W 48 -H 32 --steps 2 --seed 7 "
      "--max-sequence-length 7 --json";
  CliRun two;
  ASSERT_NO_FATAL_FAILURE(run_both(request, "--pipefusion 2 --warmup-steps 2", &two));
  EXPECT_NE(two.out.find("prompt truncated for T5"), std::string::npos) << two.out;
  expect_same_png("one.png", "two.png", 48, 32);
}

TEST_F(MpiGenerate, AMeshThatDoesNotFitTheProcessesIsRefused) {
  const CliRun r = generate(PARADIT_MPIRUN " -np 2", "-p 'a fox' --device cpu -W 32 -H 32 --steps 1 --ulysses 2 --ring 2");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("2 MPI processes"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace paradit
