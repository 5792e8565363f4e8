// MLM masking statistics (objectives/masking.h) on the bert-base-uncased tokenizer: selection
// rate and the 80/10/10 split within 5 standard errors, special tokens never selected, seeded
// (same seed → same masks, another seed → others), whole words masked together; macro-F1.
#include <gtest/gtest.h>

#include <cmath>

#include "objectives/masking.h"
#include "objectives/objective.h"

namespace peft {
namespace {

std::unique_ptr<Tokenizer> bert_tokenizer() {
  return load_tokenizer(std::string(PEFT_ASSETS_DIR) + "/tokenizers/bert-base-uncased");
}

Example long_example(const Tokenizer& tok, int64_t n) {
  Example e;
  e.input_ids.push_back(tok.special_ids().cls);
  for (int64_t i = 0; i < n; ++i) e.input_ids.push_back(int32_t(2000 + i % 20000));
  e.input_ids.push_back(tok.special_ids().sep);
  e.labels = e.input_ids;
  return e;
}

// |observed − p·n| within 5 standard errors of a binomial(n, p).
void expect_rate(int64_t hits, int64_t n, double p, const char* what) {
  const double sd = std::sqrt(double(n) * p * (1 - p));
  EXPECT_LT(std::abs(double(hits) - p * double(n)), 5 * sd) << what << ": " << hits << " of " << n;
}

TEST(Masking, SelectionAnd801010WithinSamplingError) {
  auto tok = bert_tokenizer();
  const int64_t n = 40000;
  Example e = long_example(*tok, n);
  const std::vector<int32_t> original = e.input_ids;
  MaskingOptions o;
  o.seed = 7;
  mask_tokens(e, *tok, 30522, o, 0);
  int64_t selected = 0, masked = 0, kept = 0, replaced = 0;
  for (size_t i = 0; i < e.input_ids.size(); ++i) {
    if (e.labels[i] == kIgnoreIndex) {
      EXPECT_EQ(e.input_ids[i], original[i]);
      continue;
    }
    ++selected;
    EXPECT_EQ(e.labels[i], original[i]);
    if (e.input_ids[i] == tok->special_ids().mask)
      ++masked;
    else if (e.input_ids[i] == original[i])
      ++kept;
    else
      ++replaced;
  }
  expect_rate(selected, n, 0.15, "selected");
  expect_rate(masked, selected, 0.8, "[MASK]");
  expect_rate(replaced, selected, 0.1, "random");
  // kept includes random draws that hit the original id (p = 1/30522, negligible)
  expect_rate(kept, selected, 0.1, "kept");
}

TEST(Masking, SpecialTokensNeverSelected) {
  auto tok = bert_tokenizer();
  MaskingOptions o;
  o.probability = 1.0;  // every maskable token
  for (uint64_t r = 0; r < 20; ++r) {
    Example e = long_example(*tok, 50);
    mask_tokens(e, *tok, 30522, o, r);
    EXPECT_EQ(e.labels.front(), kIgnoreIndex);
    EXPECT_EQ(e.labels.back(), kIgnoreIndex);
    EXPECT_EQ(e.input_ids.front(), tok->special_ids().cls);
    EXPECT_EQ(e.input_ids.back(), tok->special_ids().sep);
    for (size_t i = 1; i + 1 < e.labels.size(); ++i) EXPECT_NE(e.labels[i], kIgnoreIndex);
  }
}

TEST(Masking, SeededAndIndependentOfOrder) {
  auto tok = bert_tokenizer();
  MaskingOptions o;
  o.seed = 3;
  Example a = long_example(*tok, 500), b = a, c = a, d = a;
  mask_tokens(a, *tok, 30522, o, 5);
  mask_tokens(b, *tok, 30522, o, 5);
  EXPECT_EQ(a.input_ids, b.input_ids);
  EXPECT_EQ(a.labels, b.labels);
  mask_tokens(c, *tok, 30522, o, 6);  // another record: another stream
  EXPECT_NE(a.labels, c.labels);
  o.seed = 4;
  mask_tokens(d, *tok, 30522, o, 5);
  EXPECT_NE(a.labels, d.labels);
}

TEST(Masking, WholeWordMasksEveryPieceOfAWord) {
  auto tok = bert_tokenizer();
  std::string text;
  for (int i = 0; i < 300; ++i) text += "unbelievable tokenization ";
  Example e;
  e.input_ids = tok->encode(text, true);
  e.labels = e.input_ids;
  const std::vector<uint8_t> starts = word_starts(*tok, e.input_ids);
  MaskingOptions o;
  o.whole_word = true;
  o.seed = 11;
  mask_tokens(e, *tok, 30522, o, 0);
  int64_t words = 0, selected_words = 0;
  for (size_t i = 1; i + 1 < e.labels.size(); ++i) {
    if (starts[i]) {
      ++words;
      selected_words += e.labels[i] != kIgnoreIndex;
    } else {  // a continuation piece shares its word's selection
      EXPECT_EQ(e.labels[i] != kIgnoreIndex, e.labels[i - 1] != kIgnoreIndex) << i;
    }
  }
  ASSERT_GT(words, 500);
  EXPECT_LT(words, int64_t(e.labels.size()) - 2);  // the words have several pieces
  expect_rate(selected_words, words, 0.15, "selected words");
}

TEST(Metrics, MacroF1OfAConfusionMatrix) {
  // class 0: tp 3, fp 1, fn 2 -> F1 6/9; class 1: tp 4, fp 2, fn 1 -> F1 8/11
  const std::vector<std::vector<int64_t>> confusion = {{3, 2}, {1, 4}};
  EXPECT_NEAR(macro_f1(confusion), (6.0 / 9.0 + 8.0 / 11.0) / 2, 1e-12);
  const EvalMetrics m = classification_metrics({"a", "b"}, {{1, 0}, {0, 2}, {3, 1}}, {0, 1, 1});
  EXPECT_EQ(m.count, 3);
  EXPECT_NEAR(m.accuracy, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(m.confusion[1][0], 1);
}

}  // namespace
}  // namespace peft
