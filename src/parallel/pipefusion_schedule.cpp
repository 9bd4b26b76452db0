#include "paradit/parallel/pipefusion_schedule.h"

#include <algorithm>
#include <limits>

#include "paradit/core/status.h"

namespace paradit {

std::vector<int> balanced_stages(const std::vector<double>& costs, int stages) {
  const int n = int(costs.size());
  PD_REQUIRE(stages >= 1 && stages <= n, "PipeFusion: ", stages, " stages for a model of ", n,
             " blocks; each stage needs at least one block (use --pipefusion 2..", n, ")");
  // best[k][i]: the smallest largest-stage cost of blocks [0, i) in k stages; cut[k][i] the start of the last.
  std::vector<double> prefix(size_t(n) + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[size_t(i) + 1] = prefix[size_t(i)] + costs[size_t(i)];
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(size_t(stages) + 1, std::vector<double>(size_t(n) + 1, inf));
  std::vector<std::vector<int>> cut(size_t(stages) + 1, std::vector<int>(size_t(n) + 1, 0));
  best[0][0] = 0;
  for (int k = 1; k <= stages; ++k)
    for (int i = k; i <= n; ++i)
      for (int j = k - 1; j < i; ++j) {
        const double c = std::max(best[size_t(k - 1)][size_t(j)], prefix[size_t(i)] - prefix[size_t(j)]);
        if (c < best[size_t(k)][size_t(i)]) {
          best[size_t(k)][size_t(i)] = c;
          cut[size_t(k)][size_t(i)] = j;
        }
      }
  std::vector<int> bounds(size_t(stages) + 1);
  bounds[size_t(stages)] = n;
  for (int k = stages; k >= 1; --k) bounds[size_t(k - 1)] = cut[size_t(k)][size_t(bounds[size_t(k)])];
  return bounds;
}

std::vector<int> explicit_stages(const std::vector<int>& starts, int blocks, int stages) {
  PD_REQUIRE(int(starts.size()) == stages - 1, "--pipefusion-split gives ", starts.size(),
             " stage starts but --pipefusion ", stages, " needs ", stages - 1,
             " (the first block of every stage but the first, increasing, within 1..", blocks - 1, ")");
  std::vector<int> b = {0};
  for (int s : starts) {
    PD_REQUIRE(s > b.back() && s < blocks, "--pipefusion-split: stage starts must increase within 1..", blocks - 1,
               " (the model has ", blocks, " blocks), got ", s, " after ", b.back());
    b.push_back(s);
  }
  b.push_back(blocks);
  return b;
}

PipeFusionSchedule::PipeFusionSchedule(int steps, int warmup, int patches, int stages) : stages_(stages) {
  PD_REQUIRE(steps >= 1 && stages >= 1 && patches >= 1, "PipeFusion schedule: steps ", steps, ", stages ", stages,
             ", patches ", patches, " must be positive");
  PD_REQUIRE(warmup >= 1, "PipeFusion needs --warmup-steps >= 1: the first step fills every block's K/V buffer");
  // Which items of the step before hold the velocity an item's rows need at stage 0.
  std::vector<std::vector<int>> needs;
  std::vector<int> previous;  // the items of the step before
  for (int t = 0; t < steps; ++t) {
    std::vector<int> current;
    const int count = t < warmup ? 1 : patches;
    for (int m = 0; m < count; ++m) {
      items_.push_back({t, t < warmup ? PipeFusionItem::kWhole : m});
      const bool prev_whole = previous.size() == 1;
      needs.push_back(previous.empty() ? std::vector<int>{}
                      : (count == 1 || prev_whole) ? previous
                                                   : std::vector<int>{previous[size_t(m)]});
      current.push_back(int(items_.size()) - 1);
    }
    previous = current;
  }
  // Greedy: every stage runs its items in order, each as soon as its input is there. An output computed at tick
  // k travels in the batch of tick k + 1 and is usable from tick k + 2 (that batch overlaps the compute of k + 1).
  const int n = int(items_.size());
  tick_.assign(size_t(stages), std::vector<int>(size_t(n), 0));
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < stages; ++s) {
      int ready = 0;
      if (s > 0) ready = tick_[size_t(s - 1)][size_t(i)] + 2;
      else
        for (int j : needs[size_t(i)]) ready = std::max(ready, tick_[size_t(stages - 1)][size_t(j)] + 2);
      if (i > 0) ready = std::max(ready, tick_[size_t(s)][size_t(i - 1)] + 1);
      tick_[size_t(s)][size_t(i)] = ready;
    }
  }
  // The last velocity travels in the tick after it was computed.
  ticks_ = tick_[size_t(stages - 1)][size_t(n - 1)] + 2;
}

int PipeFusionSchedule::item_at(int stage, int tick) const {
  const auto& row = tick_[size_t(stage)];
  const auto it = std::lower_bound(row.begin(), row.end(), tick);
  return it != row.end() && *it == tick ? int(it - row.begin()) : -1;
}

}  // namespace paradit
