// Stream order for the transfers of a denoising loop or a parallel decode (Communicator::set_stream_ordered),
// switched on only where it is safe: after every rank of the image's group has run the same shapes once
// synchronously. A decode is a loop of one step: stream-ordered when warm, else synchronous.
#pragma once

#include <array>
#include <cstdint>
#include <set>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"

namespace paradit::flux_pipeline {

// The shapes a loop's steps repeat (width, height, text tokens, true CFG): the first step over new ones loads
// kernels and builds library plans, which must not happen while a transfer waits on a peer.
using LoopShape = std::array<int64_t, 4>;

// The loop's step 0 runs synchronously unless every rank of the group has run these shapes before (the ranks
// agree on it in one all-reduce, so a rank whose last request failed cannot disagree); the rest runs
// stream-ordered, entered at a barrier. finish() switches back, waiting for what is in flight, so decoding's
// first-time plans never meet a transfer in flight; leaving the scope by an exception switches back too.
class StreamOrderScope {
 public:
  // group: the ranks that make the image together (null or one rank: nothing to do). warm: the shapes this
  // rank has run through the whole loop before.
  StreamOrderScope(Backend& backend, Communicator* group, std::set<LoopShape>& warm, LoopShape shape);
  ~StreamOrderScope();
  StreamOrderScope(const StreamOrderScope&) = delete;
  StreamOrderScope& operator=(const StreamOrderScope&) = delete;

  // Call before step i.
  void before_step(int i);
  // Call after the loop: switches back and records the shapes as run.
  void finish();

 private:
  Communicator* group_;
  std::set<LoopShape>& warm_;
  LoopShape shape_;
  int first_ordered_step_ = 1;  // 0 once every rank ran the shapes
  bool on_ = false;
};

}  // namespace paradit::flux_pipeline
