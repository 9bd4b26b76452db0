// The two kinds of attention against kept K/V that trade exactness for less communication (parallel-methods.md
// §6, §11). Both keep, for every block, a K/V buffer of the whole joint [text; image] sequence; a forward writes
// its rows' fresh K/V into it and its queries meet the whole buffer, whose other rows are as fresh as the method
// allows. With every step synchronous (warm-up), every row is fresh and the attention is exact.
#pragma once

#include <map>
#include <memory>

#include "paradit/comm/communicator.h"
#include "paradit/models/flux_transformer.h"
#include "paradit/parallel/sequence_shard.h"

namespace paradit {

// PipeFusion: a stage runs patch after patch; the buffer rows of patches already run this step are fresh, the
// rest hold the last step's K/V. Under sequence parallelism within the stage (`sp` set), the patch's rows are cut
// over the SP group by SequenceShard and each rank gathers the whole patch's fresh K/V into its buffer (an
// all-gather of the rows of k and v, as much data as Ulysses' all-to-all would move), so its queries meet every
// key with plain attention.
class PipeFusionKv final : public FluxKvAttention {
 public:
  explicit PipeFusionKv(Communicator* sp = nullptr) : sp_(sp) {}
  // The next forward runs patch rows [first, first + rows) of the joint sequence (of `sequence` rows); this
  // rank holds part sp->rank() of SequenceShard(rows, sp size).
  void set_patch(int64_t sequence, int64_t first, int64_t rows);
  // This rank's rows of the patch: [local_first(), local_first() + local_rows()).
  int64_t local_first() const;
  int64_t local_rows() const;

  void attend(Backend& be, int layer, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
              float scale) override;

 private:
  Communicator* sp_;
  int64_t sequence_ = 0, first_ = 0, rows_ = 0;
  std::map<int, std::pair<Tensor, Tensor>> kv_;  // block → K, V [B, sequence, H, d]
};

// Patch parallel (DistriFusion): rank p of `group` owns rows SequenceShard(sequence, size).part p for every block.
// Its queries meet its own fresh K/V and the other ranks' K/V of the last step; after each block's attention
// the fresh rows go to every other rank by one posted send/recv batch, which runs behind the following blocks
// and is waited for only when that block's buffer is read again, the next step. A synchronous step exchanges
// before attending: exact.
class PatchParallelKv final : public FluxKvAttention {
 public:
  PatchParallelKv(Communicator& group, int64_t sequence) : group_(group), shard_(sequence, group.size()) {}
  void set_synchronous(bool synchronous) { synchronous_ = synchronous; }
  // Waits for every posted exchange (the end of a denoising loop: nothing may stay in flight).
  void finish();

  void attend(Backend& be, int layer, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
              float scale) override;

 private:
  struct Layer {
    Tensor k, v;  // [B, sequence, H, d]
    std::unique_ptr<CommRequest> pending;
  };
  std::unique_ptr<CommRequest> exchange(const Layer& l);

  Communicator& group_;
  SequenceShard shard_;
  bool synchronous_ = true;
  std::map<int, Layer> layers_;
};

}  // namespace paradit
