// MPI's lifetime in this process: initialised on first use, finalised at exit.
#if defined(PARADIT_WITH_MPI)

#include <mpi.h>

#include "comm/mpi/mpi_util.h"
#include "paradit/comm/mpi.h"
#include "paradit/core/status.h"

namespace paradit {

namespace {

class MpiRuntime {
 public:
  MpiRuntime() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    int provided = 0;
    if (initialised) {
      MPI_Query_thread(&provided);
    } else {
      detail::mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
      owned_ = true;
    }
    // The rank's worker thread makes the calls, and abort() may come from any thread.
    PD_REQUIRE(provided >= MPI_THREAD_MULTIPLE, "MPI: this MPI library does not support MPI_THREAD_MULTIPLE, which ",
               "paradit's ranks need (their calls come from worker threads)");
    // Errors come back as return codes and become paradit::Error; communicators duplicated later inherit it.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &info_.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &info_.size);
    MPI_Comm local = MPI_COMM_NULL;
    detail::mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info_.rank, MPI_INFO_NULL, &local),
                      "MPI_Comm_split_type");
    MPI_Comm_rank(local, &info_.local_rank);
    MPI_Comm_size(local, &info_.local_size);
    MPI_Comm_free(&local);
  }

  ~MpiRuntime() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (owned_ && !finalised) MPI_Finalize();
  }

  const MpiProcess& info() const { return info_; }

 private:
  MpiProcess info_;
  bool owned_ = false;
};

}  // namespace

bool mpi_available(std::string* why) {
  if (why) why->clear();
  return true;
}

const MpiProcess& mpi_process() {
  static MpiRuntime runtime;
  return runtime.info();
}

}  // namespace paradit

#endif
