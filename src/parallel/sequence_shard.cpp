#include "paradit/parallel/sequence_shard.h"

#include <algorithm>

#include "paradit/core/status.h"

namespace paradit {

SequenceShard::SequenceShard(int64_t length, int parts) : length_(length), parts_(parts) {
  PD_REQUIRE(length >= 0, "SequenceShard: negative length ", length);
  PD_REQUIRE(parts >= 1, "SequenceShard: parts must be >= 1, got ", parts);
}

int64_t SequenceShard::start(int part) const {
  PD_REQUIRE(part >= 0 && part <= parts_, "SequenceShard: part ", part, " out of range for ", parts_, " parts");
  const int64_t base = length_ / parts_, extra = length_ % parts_;
  return part * base + std::min<int64_t>(part, extra);
}

int64_t SequenceShard::count(int part) const {
  PD_REQUIRE(part >= 0 && part < parts_, "SequenceShard: part ", part, " out of range for ", parts_, " parts");
  return length_ / parts_ + (part < length_ % parts_ ? 1 : 0);
}

std::vector<int64_t> SequenceShard::counts() const {
  std::vector<int64_t> c(parts_);
  for (int p = 0; p < parts_; ++p) c[p] = count(p);
  return c;
}

}  // namespace paradit
