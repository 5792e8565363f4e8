// Tokenised examples and the batches built from them.
// An Example holds token ids and the *shifted* targets: targets[t] is the token that position t
// must predict (labels[t + 1] in Hugging Face's convention), −100 where no loss is taken. Shifting
// per example before batching means padding and packing never create a target across records.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace peft {

constexpr int32_t kIgnoreIndex = -100;

struct Example {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> targets;  // same length as input_ids
  int64_t source_line = 0;       // 1-based record number in the data file (for messages)
};

// From HF-style labels aligned with input_ids: targets[t] = labels[t + 1], last = −100.
Example example_from_labels(std::vector<int32_t> input_ids, const std::vector<int32_t>& labels);

struct Batch {
  int64_t batch = 0, seq = 0;
  Tensor input_ids;           // i32 [B, T]; padding holds pad_id
  Tensor targets;             // i32 [B, T]; −100 on padding and masked positions
  Tensor attention_mask;      // i32 [B, T]; 1 for real tokens
  Tensor positions;           // i32 [B, T]; restart at 0 for every packed record
  Tensor segment_ids;         // i32 [B, T]; record index within the row (packing), else undefined
  int64_t target_tokens = 0;  // number of targets ≠ −100
  int64_t real_tokens = 0;    // number of non-padding tokens
};

struct BatchingOptions {
  int64_t batch_size = 1;
  int64_t max_len = 0;   // truncate longer examples (0: no limit)
  bool packing = false;  // concatenate short examples into rows of max_len
  bool shuffle = true;
  bool bucket_by_length = true;  // sort within windows of batches to limit padding
  int32_t pad_id = 0;
};

// Truncates to max_len (counting the truncated examples) and returns the batches of one epoch,
// in an order fixed by (rng seed, epoch). Right padding.
struct EpochPlan {
  std::vector<std::vector<size_t>> batches;  // indices into the (truncated / packed) examples
};

class BatchBuilder {
 public:
  BatchBuilder(std::vector<Example> examples, BatchingOptions options);
  int64_t truncated() const { return truncated_; }
  size_t num_examples() const { return examples_.size(); }  // rows after packing
  const std::vector<Example>& examples() const { return examples_; }
  // The batch order of one epoch: shuffled by Rng(seed, epoch), bucketed by length.
  EpochPlan plan_epoch(uint64_t seed, int64_t epoch) const;
  Batch make_batch(const std::vector<size_t>& indices) const;

 private:
  std::vector<Example> examples_;
  std::vector<std::vector<int32_t>> segments_;  // per packed row: segment id per token
  BatchingOptions options_;
  int64_t truncated_ = 0;
};

}  // namespace peft
