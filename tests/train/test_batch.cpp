#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "train/batch.h"

namespace peft {
namespace {

std::vector<Example> examples(std::vector<int> lengths) {
  std::vector<Example> out;
  int32_t next = 1;
  for (int len : lengths) {
    std::vector<int32_t> ids;
    for (int i = 0; i < len; ++i) ids.push_back(next++);
    out.push_back(Example{ids, ids, {}, 0});
  }
  return out;
}

std::vector<int32_t> row(const Tensor& t, int64_t r) {
  const int32_t* p = t.data<int32_t>() + r * t.dim(1);
  return {p, p + t.dim(1)};
}

TEST(Batch, PaddingIsUnscoredAndDecodersNeverScoreTheFirstToken) {
  BatchBuilder builder(examples({3, 1}), {.batch_size = 2, .shuffle = false, .pad_id = 99});
  Batch b = builder.make_batch({0, 1});
  EXPECT_EQ(b.seq, 3);
  EXPECT_EQ(row(b.input_ids, 0), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(row(b.labels, 0), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(row(b.input_ids, 1), (std::vector<int32_t>{4, 99, 99}));
  EXPECT_EQ(row(b.labels, 1), (std::vector<int32_t>{4, -100, -100}));
  EXPECT_EQ(row(b.attention_mask, 1), (std::vector<int32_t>{1, 0, 0}));
  EXPECT_EQ(b.target_tokens, 2);  // tokens 2 and 3; nothing predicts a row's first token
  EXPECT_EQ(b.real_tokens, 4);
  BatchBuilder masked_lm(examples({3, 1}), {.batch_size = 2, .shuffle = false, .shifted = false});
  EXPECT_EQ(masked_lm.make_batch({0, 1}).target_tokens, 4);
}

TEST(Batch, TruncationIsCounted) {
  BatchBuilder builder(examples({5, 2}), {.batch_size = 1, .max_len = 3, .shuffle = false});
  EXPECT_EQ(builder.truncated(), 1);
  Batch b = builder.make_batch({0});
  EXPECT_EQ(row(b.labels, 0), (std::vector<int32_t>{1, 2, 3}));
}

TEST(Batch, PackingNeverCrossesRecords) {
  BatchBuilder builder(examples({2, 3, 4}),
                       {.batch_size = 1, .max_len = 6, .packing = true, .shuffle = false});
  ASSERT_EQ(builder.num_examples(), 2u);  // [2 + 3], [4]
  Batch b = builder.make_batch({0, 1});   // rows pad to the longest row, not to max_len
  EXPECT_EQ(row(b.input_ids, 0), (std::vector<int32_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(row(b.labels, 0), (std::vector<int32_t>{-100, 2, -100, 4, 5}));
  EXPECT_EQ(row(b.positions, 0), (std::vector<int32_t>{0, 1, 0, 1, 2}));
  EXPECT_EQ(row(b.segment_ids, 0), (std::vector<int32_t>{0, 0, 1, 1, 1}));
  EXPECT_EQ(row(b.segment_ids, 1), (std::vector<int32_t>{0, 0, 0, 0, -1}));
}

TEST(Batch, MaskedLmPackingKeepsEveryLabelAndTheTokenTypes) {
  std::vector<Example> ex = examples({2, 3});
  ex[1].token_type_ids = {0, 1, 1};
  BatchBuilder builder(
      ex, {.batch_size = 1, .max_len = 6, .packing = true, .shuffle = false, .shifted = false});
  Batch b = builder.make_batch({0});
  EXPECT_EQ(row(b.labels, 0), (std::vector<int32_t>{1, 2, 3, 4, 5}));
  ASSERT_TRUE(b.token_type_ids.defined());
  EXPECT_EQ(row(b.token_type_ids, 0), (std::vector<int32_t>{0, 0, 0, 1, 1}));
  EXPECT_EQ(row(b.segment_ids, 0), (std::vector<int32_t>{0, 0, 1, 1, 1}));
}

TEST(Batch, EpochsAreSeededPermutationsThatCoverEveryExampleOnce) {
  BatchBuilder builder(examples({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}), {.batch_size = 3});
  auto flat = [](const EpochPlan& p) {
    std::vector<size_t> v;
    for (auto& b : p.batches) v.insert(v.end(), b.begin(), b.end());
    return v;
  };
  auto e0 = flat(builder.plan_epoch(7, 0));
  EXPECT_EQ(e0, flat(builder.plan_epoch(7, 0)));
  EXPECT_NE(e0, flat(builder.plan_epoch(7, 1)));
  EXPECT_NE(e0, flat(builder.plan_epoch(8, 0)));
  EXPECT_EQ(std::set<size_t>(e0.begin(), e0.end()).size(), 11u);
  EXPECT_EQ(builder.plan_epoch(7, 0).batches.size(), 4u);
  BatchBuilder ordered(examples({1, 2, 3}), {.batch_size = 2, .shuffle = false});
  EXPECT_EQ(flat(ordered.plan_epoch(7, 0)),
            (std::vector<size_t>{0, 1, 2}));  // --no-shuffle: data order
}

}  // namespace
}  // namespace peft
