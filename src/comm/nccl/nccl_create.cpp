#include "comm/nccl/nccl_communicator.h"

#if PARADIT_HAS_NCCL

#include <numeric>
#include <set>
#include <thread>

#include "comm/comm_text.h"
#include "paradit/core/log.h"
#include "paradit/comm/nccl.h"

namespace paradit {

namespace {

void abort_all(std::vector<ncclComm_t>& comms) {
  for (ncclComm_t& c : comms)
    if (c) ncclCommAbort(c);
  comms.assign(comms.size(), nullptr);
}

// Waits until every communicator has finished initialising (nonblocking init returns at once).
Status wait_initialised(const std::vector<ncclComm_t>& comms) {
  const auto timeout = default_comm_timeout();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (size_t i = 0; i < comms.size(); ++i) {
    for (;;) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comms[i], &state);
      if (r != ncclSuccess) state = r;
      if (state == ncclSuccess) break;
      if (state != ncclInProgress)
        return Status(StatusCode::kUnavailable,
                      detail::concat("NCCL initialisation of rank ", i, " failed: ", ncclGetErrorString(state), " (",
                                     ncclGetLastError(comms[i]), ")"));
      if (std::chrono::steady_clock::now() > deadline)
        return Status(StatusCode::kTimeout,
                      detail::concat("NCCL initialisation of rank ", i, " timed out after ", seconds_str(timeout)));
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  return Status();
}

void require_ok(ncclResult_t r, const char* call) {
  PD_REQUIRE(r == ncclSuccess, call, ": ", ncclGetErrorString(r), " (", ncclGetLastError(nullptr), ")");
}

}  // namespace

std::vector<std::unique_ptr<Communicator>> create_nccl_communicators(const std::vector<Backend*>& backends) {
  const int n = int(backends.size());
  PD_REQUIRE(n >= 1, "NCCL communicators: no backends");
  std::set<int> gpus;
  for (Backend* be : backends) {
    PD_REQUIRE(be != nullptr && be->device().is_cuda(), "NCCL communicators need CUDA backends, got ",
               be ? be->name() : std::string("null"));
    PD_REQUIRE(gpus.insert(be->device().index).second, "NCCL communicators: two ranks on ", be->device().str(),
               "; one rank per GPU");
  }

  ncclUniqueId id;
  require_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
  // One thread initialises every rank, so the calls are grouped (NCCL would otherwise wait for the other ranks
  // inside the first call).
  std::vector<ncclComm_t> comms(n, nullptr);
  ncclConfig_t config = detail::nonblocking_config();
  Status s;
  detail::FirstError first;
  first(ncclGroupStart());
  for (int i = 0; i < n && s.ok(); ++i) {
    const cudaError_t e = cudaSetDevice(backends[i]->device().index);
    if (e != cudaSuccess) {
      s = Status(StatusCode::kUnavailable,
                 detail::concat("cudaSetDevice(", backends[i]->device().index, "): ", cudaGetErrorString(e)));
    } else {
      first(ncclCommInitRankConfig(&comms[i], n, id, i, &config));
    }
  }
  first(ncclGroupEnd());
  if (s.ok() && first.result != ncclSuccess)
    s = Status(StatusCode::kUnavailable,
               detail::concat("NCCL initialisation failed: ", ncclGetErrorString(first.result), " (",
                              ncclGetLastError(nullptr), ")"));
  if (s.ok()) s = wait_initialised(comms);
  if (!s.ok()) {
    abort_all(comms);
    throw Error(s);
  }

  auto domain = std::make_shared<detail::NcclDomain>();
  std::vector<int> devices;
  for (Backend* be : backends) devices.push_back(be->device().index);
  std::string why_not;
  domain->peer_copy = detail::enable_peer_copies(devices, &why_not);
  if (domain->peer_copy) {
    PD_LOG(kInfo, "send/recv between the ", n, " GPUs on copy engines (peer access); PARADIT_P2P=nccl for NCCL");
  } else if (n > 1) {
    PD_LOG(kInfo, "send/recv through NCCL: ", why_not);
  }
  std::vector<int> members(n);
  std::iota(members.begin(), members.end(), 0);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int i = 0; i < n; ++i) {
    s = capture([&] {
      out.push_back(
          std::make_unique<detail::NcclCommunicator>(*backends[i], comms[i], domain, "world", "world", members, i));
    });
    comms[i] = nullptr;  // owned (or already aborted) by the communicator
    if (!s.ok()) {
      abort_all(comms);
      throw Error(s);
    }
  }
  return out;
}

std::unique_ptr<Communicator> create_nccl_communicator_mpi(Backend& be, Communicator& host) {
  PD_REQUIRE(be.device().is_cuda(), "NCCL communicators need a CUDA backend, got ", be.name());
  // The id travels as bytes (one-byte elements: host transports move them as they are).
  ncclUniqueId id{};
  if (host.rank() == 0) require_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
  host.broadcast(Tensor::borrow(&id, {int64_t(sizeof id)}, DType::kF8E4M3, Device::cpu()), 0);

  const int device = be.device().index;
  const cudaError_t e = cudaSetDevice(device);
  PD_REQUIRE(e == cudaSuccess, "cudaSetDevice(", device, "): ", cudaGetErrorString(e));
  std::vector<ncclComm_t> comm(1, nullptr);
  ncclConfig_t config = detail::nonblocking_config();
  const ncclResult_t r = ncclCommInitRankConfig(&comm[0], host.size(), id, host.rank(), &config);
  Status s;
  if (r != ncclSuccess && r != ncclInProgress)
    s = Status(StatusCode::kUnavailable, detail::concat("NCCL initialisation of rank ", host.rank(), " failed: ",
                                                        ncclGetErrorString(r), " (", ncclGetLastError(nullptr), ")"));
  if (s.ok()) s = wait_initialised(comm);
  if (!s.ok()) {
    abort_all(comm);
    throw Error(s);
  }
  std::unique_ptr<Communicator> out;
  s = capture([&] {
    out = std::make_unique<detail::NcclCommunicator>(be, comm[0], std::make_shared<detail::NcclDomain>(), "world",
                                                     "world", host.members(), host.rank());
  });
  if (!s.ok()) throw Error(s);  // the communicator aborted the NCCL one it could not take
  return out;
}

}  // namespace paradit

#endif
