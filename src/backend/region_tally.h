// Region timing's totals (Backend::take_region_times): time and count per region name, names in order of first
// appearance. Shared by the host clock (backend/region_timing.cpp) and the CUDA backend's event clock.
#pragma once

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "paradit/backend/backend.h"

namespace paradit {

class RegionTally {
 public:
  void add(const std::string& name, double ms) {
    auto [it, fresh] = index_.try_emplace(name, times_.size());
    if (fresh) times_.push_back({name, 0.0, 0});
    times_[it->second].ms += ms;
    times_[it->second].count += 1;
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
