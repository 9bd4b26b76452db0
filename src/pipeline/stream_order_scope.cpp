#include "pipeline/stream_order_scope.h"

#include "paradit/core/status.h"

namespace paradit::flux_pipeline {

StreamOrderScope::StreamOrderScope(Backend& backend, Communicator* group, std::set<LoopShape>& warm, LoopShape shape)
    : group_(group && group->size() > 1 ? group : nullptr), warm_(warm), shape_(shape) {
  if (!group_) return;
  Tensor mine = Tensor::empty({1}, DType::kF32, cpu_allocator());
  mine.data_as<float>()[0] = warm_.contains(shape_) ? 1.0f : 0.0f;
  const Tensor count = backend.upload(mine, DType::kF32);
  group_->all_reduce(count);
  if (backend.download_f32(count).data_as<float>()[0] == float(group_->size())) first_ordered_step_ = 0;
}

StreamOrderScope::~StreamOrderScope() {
  // Unwinding: switch back all the same. The wait ends at once if the family has failed (the usual reason for
  // leaving this way), else when this rank's queued transfers, which its peers also joined, are done.
  if (on_) (void)capture([&] { group_->set_stream_ordered(false); });
}

void StreamOrderScope::before_step(int i) {
  if (!group_ || on_ || i != first_ordered_step_) return;
  if (first_ordered_step_ > 0) group_->barrier();  // every rank is past its first step (and its first launches)
  group_->set_stream_ordered(true);
  on_ = true;
}

void StreamOrderScope::finish() {
  if (on_) group_->set_stream_ordered(false);
  on_ = false;
  warm_.insert(shape_);
}

}  // namespace paradit::flux_pipeline
