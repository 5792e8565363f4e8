#include <gtest/gtest.h>

#include <map>

#include "infer/sampling.h"

namespace peft {
namespace {

TEST(Sampling, GreedyTakesTheArgmax) {
  std::vector<float> logits{0.1f, 2.0f, -1.0f, 1.9f};
  Rng rng(1);
  EXPECT_EQ(sample_next_token(logits, {}, {}, rng), 1);
}

TEST(Sampling, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  std::vector<float> logits{2.0f, -1.0f, 1.5f};
  SamplingOptions o;
  o.repetition_penalty = 2.0f;
  Rng rng(1);
  EXPECT_EQ(sample_next_token(logits, {0, 1, 0}, o, rng), 2);  // 2.0 -> 1.0, now below 1.5
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
  EXPECT_FLOAT_EQ(logits[1], -2.0f);
}

TEST(Sampling, TopKAndTopPRestrictTheCandidatesAndSeedsRepeat) {
  std::vector<float> base{3.0f, 2.9f, 0.0f, -5.0f, 2.8f};
  SamplingOptions o;
  o.greedy = false;
  o.top_k = 2;
  std::map<int32_t, int> counts;
  Rng rng(7);
  for (int i = 0; i < 400; ++i) {
    std::vector<float> l = base;
    counts[sample_next_token(l, {}, o, rng)]++;
  }
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_GT(counts[0], 100);
  EXPECT_GT(counts[1], 100);
  o.top_k = 0;
  o.top_p = 0.5f;  // p ≈ (0.36, 0.33, 0.30, ...): the nucleus holds the two most likely
  counts.clear();
  for (int i = 0; i < 400; ++i) {
    std::vector<float> l = base;
    counts[sample_next_token(l, {}, o, rng)]++;
  }
  EXPECT_EQ(counts.size(), 2u);
  auto draw = [&](uint64_t seed) {
    Rng r(seed);
    std::vector<int32_t> ids;
    SamplingOptions s;
    s.greedy = false;
    for (int i = 0; i < 20; ++i) {
      std::vector<float> l = base;
      ids.push_back(sample_next_token(l, {}, s, r));
    }
    return ids;
  };
  EXPECT_EQ(draw(3), draw(3));
  EXPECT_NE(draw(3), draw(4));
}

TEST(Sampling, LowTemperatureApproachesGreedy) {
  SamplingOptions o;
  o.greedy = false;
  o.temperature = 0.01f;
  Rng rng(2);
  for (int i = 0; i < 50; ++i) {
    std::vector<float> l{1.0f, 1.2f, 0.9f};
    ASSERT_EQ(sample_next_token(l, {}, o, rng), 1);
  }
}

}  // namespace
}  // namespace peft
