// Tokenised examples and the batches built from them. Labels follow Hugging Face: aligned with
// input_ids, −100 where no loss is taken; a decoder's loss predicts labels[t + 1] from position t
// (the model shifts), a masked LM scores labels[t] at t. Packing (for a decoder) sets the label of
// every record's first token to −100, so no position is ever asked to predict across a record
// boundary; positions restart and segment ids keep attention inside each record.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace peft {

constexpr int32_t kIgnoreIndex = -100;

struct Example {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;          // same length as input_ids
  std::vector<int32_t> token_type_ids;  // optional (BERT); empty = all 0
  int64_t source_line = 0;              // 1-based record number in the data file (for messages)
};

struct Batch {
  int64_t batch = 0, seq = 0;
  Tensor input_ids;           // i32 [B, T]; padding holds pad_id
  Tensor labels;              // i32 [B, T]; −100 on padding and unscored positions
  Tensor token_type_ids;      // i32 [B, T] (BERT) or undefined
  Tensor attention_mask;      // i32 [B, T]; 1 for real tokens
  Tensor positions;           // i32 [B, T]; restart at 0 for every packed record
  Tensor segment_ids;         // i32 [B, T]; record index within the row (packing), else undefined
  int64_t target_tokens = 0;  // number of scored tokens (after the objective's shift)
  int64_t real_tokens = 0;    // number of non-padding tokens
};

struct BatchingOptions {
  int64_t batch_size = 1;
  int64_t max_len = 0;   // truncate longer examples (0: no limit)
  bool packing = false;  // concatenate short examples into rows of max_len
  bool shuffle = true;
  bool bucket_by_length = true;  // sort within windows of batches to limit padding
  int32_t pad_id = 0;
  bool shifted = true;  // decoders: position t predicts labels[t + 1]; masked LM: false
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
