// Data-parallel training (mpirun -np N peft train): how the trainer splits work and keeps the
// ranks' replicas equal. The global batch of a step is the same as on one process (grad_accum
// micro-batches of batch_size records, in the epoch plan's order); each micro-batch's records are
// split into N contiguous shares, rank r taking share r. Every rank normalises its loss by the
// step's global target-token count (one small all-reduce before the forward passes), so the sum
// of the ranks' gradients, one all-reduce over the ParamStore's single gradient buffer, is the
// gradient one process would compute; clipping and AdamW then run identically on every rank.
// With a sharded optimizer (ZeRO stage 1) rank r keeps the AdamW moments of its contiguous
// slice of the parameter buffer only, updates that slice and broadcasts it to the others.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace peft {

// Rank `rank`'s contiguous share of `n` items split as evenly as possible over `ranks`:
// [n·rank/ranks, n·(rank+1)/ranks).
std::pair<int64_t, int64_t> share_of(int64_t n, int rank, int ranks);
// The records of one micro-batch that rank `rank` computes.
std::vector<size_t> records_of_rank(const std::vector<size_t>& batch, int rank, int ranks);
// A checksum of a tensor's bytes that does not depend on the thread count.
uint64_t fingerprint(const Tensor& t);
// Error unless every rank holds bit-identical `values` (`when` names the moment for the message).
void check_replicas_agree(const Tensor& values, const char* when);

}  // namespace peft
