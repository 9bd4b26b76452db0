// Wording shared by both transports' error messages.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "paradit/core/tensor.h"

namespace paradit {

std::string seconds_str(std::chrono::milliseconds t);  // "0.2 s"
// "f32[2, 3]": what a piece is, for mismatch messages.
std::string type_str(const Tensor& t);
// "ulysses {4, 5, 6, 7}": a group by name and world ranks.
std::string group_str(const std::string& name, const std::vector<int>& members);
// "rank 2" or "ranks 1, 3" (group ranks), followed by their world ranks when those differ: "rank 2 (world 5)".
std::string ranks_str(const std::vector<int>& members, const std::vector<int>& group_ranks);

}  // namespace paradit
