// Data-parallel training (mpirun -np N peft train): how the trainer splits work and keeps the
// ranks' replicas equal. The global batch of a step is the same as on one process (grad_accum
// micro-batches of batch_size records, in the epoch plan's order); each micro-batch's records are
// split into N contiguous shares, rank r taking share r. Every rank normalises its loss by the
// step's global target-token count (one small all-reduce before the forward passes), so the sum
// of the ranks' gradients, one all-reduce over the ParamStore's single gradient buffer, is the
// gradient one process would compute; clipping and AdamW then run identically on every rank.
// With a sharded optimizer (ZeRO stage 1) rank r keeps the AdamW moments of its contiguous
// slice of the parameter buffer only, updates that slice and broadcasts it to the others.
// For large trainable states (full fine-tuning) the gradient sum is instead overlapped with the
// step's last backward pass, in buckets (OverlappedAllreduce below).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "autograd/tape.h"
#include "core/tensor.h"

namespace peft {

// Rank `rank`'s contiguous share of `n` items split as evenly as possible over `ranks`:
// [n·rank/ranks, n·(rank+1)/ranks).
std::pair<int64_t, int64_t> share_of(int64_t n, int rank, int ranks);
// The records of one micro-batch that rank `rank` computes.
std::vector<size_t> records_of_rank(const std::vector<size_t>& batch, int rank, int ranks);
// A checksum of a tensor's bytes that does not depend on the thread count.
uint64_t fingerprint(const Tensor& t);
// Bucket size of the overlapped sum: 4 MiB of f32 gradients, large enough that a bucket's fixed
// cost (a few messages) is small against its transfer, small enough that the last bucket, which
// backward cannot hide, is a small part of a large model's sum.
constexpr int64_t kOverlapBucketFloats = int64_t(1) << 20;
// --allreduce-overlap auto overlaps from this many trainable parameters up (docs/distributed.md:
// below it the whole sum is a few milliseconds, one blocking all-reduce costs no more).
constexpr int64_t kOverlapAutoMinFloats = int64_t(16) << 20;

// The gradient sum overlapped with backward: the buffer is cut into buckets of `bucket_floats`
// floats from its end (the last layers' parameters, whose gradients are final first in backward)
// towards its start. Watching the step's last backward (Tape::watch), a bucket's non-blocking
// all-reduce starts as soon as no closure left on the tape can write into it, and between
// closures the started sums progress. Buckets start in that fixed order on every rank (a
// bucket waits for the one before it), so the ranks' collectives match whatever their timing.
// finish() starts the rest and waits. Each element is summed over the same ranks as by one
// all-reduce of the whole buffer, so the result is the same (bit for bit with 2 ranks, where
// a + b is the only order).
class OverlappedAllreduce final : public GradientWatch {
 public:
  OverlappedAllreduce(Tensor& grads, int64_t bucket_floats, bool bf16);
  // Before each step: no bucket started, each free to start (a rank without a backward pass in
  // this step then starts them all in finish()).
  void begin_step();
  void plan(const std::vector<GradientUse>& uses, size_t closures) override;
  void progress(size_t closures_left) override;
  // Starts the buckets not started yet and waits for every sum.
  void finish();
  size_t buckets() const { return buckets_.size(); }
  // Buckets started before finish() in the last step: the part of the sum backward could hide.
  size_t started_in_backward() const { return started_in_backward_; }

 private:
  struct Bucket {
    int64_t lo = 0, hi = 0;      // [lo, hi) of the buffer
    size_t ready_when_left = 0;  // final once at most this many closures are left to run
  };
  void start_ready(size_t closures_left);
  float* data_;
  bool bf16_;
  std::vector<Bucket> buckets_;  // in start order: buckets_[0] ends at the buffer's end
  size_t next_ = 0;              // the next bucket to start
  size_t started_in_backward_ = 0;
};

// Error unless every rank holds bit-identical `values` (`when` names the moment for the message).
void check_replicas_agree(const Tensor& values, const char* when);

}  // namespace peft
