// Region timing on the GPU (Backend::mark_region): each mark records an event on the backend's stream, so the
// host never waits; take() waits for the last one and reads the times between consecutive events.
#include <cuda_runtime.h>

#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "paradit/backend/region_tally.h"

namespace paradit {

std::unique_ptr<Backend::RegionClock> CudaBackendImpl::make_region_clock() {
  class EventClock final : public RegionClock {
   public:
    EventClock(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
    ~EventClock() override {
      cuda::DeviceGuard guard(device_);
      for (const auto& [name, e] : marks_) (void)cudaEventDestroy(e);
      for (cudaEvent_t e : spare_) (void)cudaEventDestroy(e);
    }
    void mark(const char* name) override { marks_.emplace_back(name, record()); }
    std::vector<RegionTime> take() override {
      if (!marks_.empty()) {
        const cudaEvent_t end = record();
        PD_CUDA_CHECK(cudaEventSynchronize(end));
        for (size_t i = 0; i < marks_.size(); ++i) {
          float ms = 0;
          PD_CUDA_CHECK(cudaEventElapsedTime(&ms, marks_[i].second, i + 1 < marks_.size() ? marks_[i + 1].second : end));
          tally_.add(marks_[i].first, ms);
          spare_.push_back(marks_[i].second);
        }
        spare_.push_back(end);
        marks_.clear();
      }
      return tally_.take();
    }

   private:
    cudaEvent_t record() {
      cuda::DeviceGuard guard(device_);
      cudaEvent_t e = nullptr;
      if (spare_.empty()) {
        PD_CUDA_CHECK(cudaEventCreate(&e));
      } else {
        e = spare_.back();
        spare_.pop_back();
      }
      PD_CUDA_CHECK(cudaEventRecord(e, stream_));
      return e;
    }
    int device_;
    cudaStream_t stream_;
    std::vector<std::pair<std::string, cudaEvent_t>> marks_;  // the open regions, in order
    std::vector<cudaEvent_t> spare_;
    RegionTally tally_;
  };
  return std::make_unique<EventClock>(index_, stream_);
}

}  // namespace paradit
