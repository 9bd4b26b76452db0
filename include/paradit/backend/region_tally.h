// Region timing's totals (Backend::take_region_times): time and count per region name, names in order of first
// appearance. Kept by the host clock (backend/region_timing.cpp) and the CUDA backend's event clock, and by
// `bench pipeline --profile` over its runs.
#pragma once

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "paradit/backend/backend.h"

namespace paradit {

class RegionTally {
 public:
  void add(const std::string& name, double ms, int64_t count = 1) {
    auto [it, fresh] = index_.try_emplace(name, times_.size());
    if (fresh) times_.push_back({name, 0.0, 0});
    times_[it->second].ms += ms;
    times_[it->second].count += count;
  }
  void add(const std::vector<RegionTime>& times) {
    for (const RegionTime& t : times) add(t.name, t.ms, t.count);
  }
  std::vector<RegionTime> take() {
    index_.clear();
    return std::exchange(times_, {});
  }

 private:
  std::vector<RegionTime> times_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace paradit
