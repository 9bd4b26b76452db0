#include "paradit/comm/communicator.h"

#include <cstdlib>
#include <string>

#include "comm/comm_text.h"
#include "paradit/core/status.h"

namespace paradit {

std::chrono::milliseconds default_comm_timeout() {
  constexpr std::chrono::milliseconds kDefault(300'000);
  const char* env = std::getenv("PARADIT_COMM_TIMEOUT");
  if (env == nullptr || *env == '\0') return kDefault;
  char* end = nullptr;
  const double seconds = std::strtod(env, &end);
  PD_REQUIRE(end != env && *end == '\0' && seconds > 0, "PARADIT_COMM_TIMEOUT='", env,
             "': expected a positive number of seconds");
  return std::chrono::milliseconds(int64_t(seconds * 1000.0 + 0.5));
}

std::string Communicator::describe() const { return group_str(name(), members()); }

void Communicator::set_timeout(std::chrono::milliseconds t) {
  PD_REQUIRE(t.count() > 0, "communicator timeout must be positive, got ", t.count(), " ms");
  timeout_ = t;
}

std::vector<Tensor> split_along(const Tensor& t, int dim, const Counts& counts, int parts, const char* op) {
  PD_REQUIRE(t.defined(), op, ": undefined tensor");
  PD_REQUIRE(dim >= -t.dim() && dim < t.dim(), op, ": dim ", dim, " out of range for ", t.desc());
  const int64_t n = t.size(dim);
  Counts c = counts;
  if (c.empty()) {
    PD_REQUIRE(n % parts == 0, op, ": dimension ", dim, " of ", t.desc(), " does not split evenly over ", parts,
               " ranks; pass per-rank counts");
    c.assign(parts, n / parts);
  }
  PD_REQUIRE(int(c.size()) == parts, op, ": ", c.size(), " counts for ", parts, " ranks");
  int64_t total = 0;
  for (int64_t x : c) {
    PD_REQUIRE(x >= 0, op, ": negative count ", x);
    total += x;
  }
  PD_REQUIRE(total == n, op, ": counts sum to ", total, " but dimension ", dim, " of ", t.desc(), " is ", n);
  std::vector<Tensor> pieces;
  pieces.reserve(parts);
  int64_t start = 0;
  for (int64_t x : c) {
    pieces.push_back(t.slice(dim, start, x));
    start += x;
  }
  return pieces;
}

void Communicator::all_to_all(const Tensor& recv, const Tensor& send, int dim, const Counts& send_counts,
                              const Counts& recv_counts) {
  all_to_all_v(split_along(recv, dim, recv_counts, size(), "all_to_all (recv)"),
               split_along(send, dim, send_counts, size(), "all_to_all (send)"));
}

void Communicator::all_gather(const Tensor& recv, const Tensor& send, int dim, const Counts& counts) {
  all_gather_v(split_along(recv, dim, counts, size(), "all_gather"), send);
}

void Communicator::reduce_scatter(const Tensor& recv, const Tensor& send, int dim, const Counts& counts) {
  reduce_scatter_v(recv, split_along(send, dim, counts, size(), "reduce_scatter"));
}

}  // namespace paradit
