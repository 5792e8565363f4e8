#include "train/batch.h"

#include <algorithm>
#include <numeric>

namespace peft {

BatchBuilder::BatchBuilder(std::vector<Example> examples, BatchingOptions options)
    : options_(options) {
  PEFT_CHECK(options_.batch_size >= 1, "batch size {}", options_.batch_size);
  for (Example& e : examples) {
    if (options_.max_len > 0 && int64_t(e.input_ids.size()) > options_.max_len) {
      e.input_ids.resize(size_t(options_.max_len));
      e.labels.resize(size_t(options_.max_len));
      if (!e.token_type_ids.empty()) e.token_type_ids.resize(size_t(options_.max_len));
      ++truncated_;
    }
  }
  examples.erase(std::remove_if(examples.begin(), examples.end(),
                                [](const Example& e) { return e.input_ids.empty(); }),
                 examples.end());
  if (!options_.packing) {
    examples_ = std::move(examples);
    return;
  }
  PEFT_CHECK(options_.max_len > 0, "packing needs max_len");
  // Greedy packing in data order: a row is filled until the next example does not fit.
  Example row;
  std::vector<int32_t> seg;
  int32_t next_segment = 0;
  auto flush = [&]() {
    if (row.input_ids.empty()) return;
    examples_.push_back(std::move(row));
    segments_.push_back(std::move(seg));
    row = Example{};
    seg.clear();
    next_segment = 0;
  };
  for (const Example& e : examples) {
    PEFT_CHECK(e.labels.size() == e.input_ids.size(), "labels {} vs input_ids {}", e.labels.size(),
               e.input_ids.size());
    if (int64_t(row.input_ids.size() + e.input_ids.size()) > options_.max_len) flush();
    if (row.input_ids.empty()) row.source_line = e.source_line;
    row.input_ids.insert(row.input_ids.end(), e.input_ids.begin(), e.input_ids.end());
    const size_t first = row.labels.size();
    row.labels.insert(row.labels.end(), e.labels.begin(), e.labels.end());
    // A decoder: nothing before it in its record predicts the first token (a masked LM scores
    // each token at its own position and keeps it).
    if (options_.shifted) row.labels[first] = kIgnoreIndex;
    if (!e.token_type_ids.empty() || !row.token_type_ids.empty()) {  // BERT: types travel along
      row.token_type_ids.resize(first, 0);
      if (e.token_type_ids.empty())
        row.token_type_ids.resize(row.input_ids.size(), 0);
      else
        row.token_type_ids.insert(row.token_type_ids.end(), e.token_type_ids.begin(),
                                  e.token_type_ids.end());
    }
    seg.insert(seg.end(), e.input_ids.size(), next_segment++);
  }
  flush();
}

EpochPlan BatchBuilder::plan_epoch(uint64_t seed, int64_t epoch) const {
  const size_t n = examples_.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  if (options_.shuffle) {  // Fisher–Yates with a counter-based stream per epoch
    Rng rng(seed, 0x5eed0000u + uint64_t(epoch));
    for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[size_t(rng.below(i))]);
  }
  const size_t bs = size_t(options_.batch_size);
  if (options_.shuffle && options_.bucket_by_length && !options_.packing && bs > 1) {
    // Only when shuffling (--no-shuffle keeps data order). Sort by length inside windows of 50
    // batches, then keep the windows' batches in shuffled order: similar lengths share a batch
    // (less padding) while the epoch stays shuffled.
    const size_t window = bs * 50;
    for (size_t w = 0; w < n; w += window) {
      auto end = order.begin() + long(std::min(n, w + window));
      std::stable_sort(order.begin() + long(w), end, [&](size_t a, size_t b) {
        return examples_[a].input_ids.size() > examples_[b].input_ids.size();
      });
    }
  }
  EpochPlan plan;
  for (size_t i = 0; i < n; i += bs)
    plan.batches.emplace_back(order.begin() + long(i), order.begin() + long(std::min(n, i + bs)));
  if (options_.shuffle && options_.bucket_by_length && plan.batches.size() > 1) {
    Rng rng(seed, 0xb0c0000u + uint64_t(epoch));
    for (size_t i = plan.batches.size(); i > 1; --i)
      std::swap(plan.batches[i - 1], plan.batches[size_t(rng.below(i))]);
  }
  return plan;
}

Batch BatchBuilder::make_batch(const std::vector<size_t>& indices) const {
  Batch b;
  b.batch = int64_t(indices.size());
  for (size_t i : indices) b.seq = std::max(b.seq, int64_t(examples_[i].input_ids.size()));
  b.input_ids = Tensor::zeros({b.batch, b.seq}, DType::I32);
  b.labels = Tensor::zeros({b.batch, b.seq}, DType::I32);
  bool types = false;
  for (size_t i : indices) types = types || !examples_[i].token_type_ids.empty();
  if (types) b.token_type_ids = Tensor::zeros({b.batch, b.seq}, DType::I32);
  b.attention_mask = Tensor::zeros({b.batch, b.seq}, DType::I32);
  b.positions = Tensor::zeros({b.batch, b.seq}, DType::I32);
  if (options_.packing) b.segment_ids = Tensor::zeros({b.batch, b.seq}, DType::I32);
  int32_t* ids = b.input_ids.data<int32_t>();
  int32_t* lb = b.labels.data<int32_t>();
  int32_t* mask = b.attention_mask.data<int32_t>();
  int32_t* pos = b.positions.data<int32_t>();
  for (int64_t r = 0; r < b.batch; ++r) {
    const Example& e = examples_[indices[size_t(r)]];
    const int64_t len = int64_t(e.input_ids.size());
    int32_t position = 0, segment = -1;
    for (int64_t t = 0; t < b.seq; ++t) {
      const int64_t k = r * b.seq + t;
      if (t < len) {
        ids[k] = e.input_ids[size_t(t)];
        lb[k] = e.labels[size_t(t)];
        if (types && !e.token_type_ids.empty())
          b.token_type_ids.data<int32_t>()[k] = e.token_type_ids[size_t(t)];
        mask[k] = 1;
        if (options_.packing) {
          const int32_t s = segments_[indices[size_t(r)]][size_t(t)];
          if (s != segment) position = 0, segment = s;
          b.segment_ids.data<int32_t>()[k] = s;
        }
        pos[k] = position++;
        b.real_tokens += 1;
        // A decoder scores labels[t] from position t − 1: the first token is never scored.
        b.target_tokens += lb[k] != kIgnoreIndex && (!options_.shifted || t > 0);
      } else {
        ids[k] = options_.pad_id;
        lb[k] = kIgnoreIndex;
        pos[k] = 0;
        if (options_.packing) b.segment_ids.data<int32_t>()[k] = -1;
      }
    }
  }
  return b;
}

}  // namespace peft
