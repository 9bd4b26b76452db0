#include "comm/comm_text.h"

#include <cstdio>

namespace paradit {

std::string seconds_str(std::chrono::milliseconds t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", double(t.count()) / 1000.0);
  return buf;
}

std::string type_str(const Tensor& t) { return std::string(dtype_name(t.dtype())) + shape_str(t.shape()); }

std::string group_str(const std::string& name, const std::vector<int>& members) {
  std::string s = name + " {";
  for (size_t i = 0; i < members.size(); ++i) s += (i ? ", " : "") + std::to_string(members[i]);
  return s + "}";
}

std::string ranks_str(const std::vector<int>& members, const std::vector<int>& group_ranks) {
  std::string s = group_ranks.size() == 1 ? "rank " : "ranks ";
  bool renumbered = false;
  for (size_t i = 0; i < group_ranks.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(group_ranks[i]);
    renumbered |= members[group_ranks[i]] != group_ranks[i];
  }
  if (!renumbered) return s;
  s += " (world ";
  for (size_t i = 0; i < group_ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(members[group_ranks[i]]);
  return s + ")";
}

}  // namespace paradit
