// Backend region timing (backend.h), with the host clock as the default: right for backends whose ops return
// when they are done (the CPU's).
#include <chrono>
#include <string>
#include <utility>

#include "paradit/backend/backend.h"
#include "paradit/backend/region_tally.h"

namespace paradit {

void Backend::set_region_timing(bool on) {
  if (on && !region_clock_) region_clock_ = make_region_clock();
  if (!on) region_clock_.reset();
}

std::vector<RegionTime> Backend::take_region_times() { return region_clock_ ? region_clock_->take() : std::vector<RegionTime>{}; }

std::unique_ptr<Backend::RegionClock> Backend::make_region_clock() {
  class HostClock final : public RegionClock {
   public:
    void mark(const char* name) override {
      close();
      current_ = name;
      start_ = std::chrono::steady_clock::now();
    }
    std::vector<RegionTime> take() override {
      close();
      current_.clear();
      return tally_.take();
    }

   private:
    void close() {
      if (current_.empty()) return;
      tally_.add(current_, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count());
    }
    RegionTally tally_;
    std::string current_;  // empty: no region open
    std::chrono::steady_clock::time_point start_;
  };
  return std::make_unique<HostClock>();
}

}  // namespace paradit
