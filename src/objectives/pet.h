// Pattern-Exploiting Training (Schick & Schütze 2021). A pattern turns a record into a cloze
// text with one mask slot — "{text} It was {mask}." — and a verbalizer maps each label to one or
// more words, each a single token v. The class score of label l at the mask position m:
//   s_l = (1 / |V_l|) Σ_{v ∈ V_l} logit_v(m)      (raw logits; only the rows v of the head)
// BERT reads the logits at its [MASK] token; a decoder reads its next-token logits at the last
// token before the mask (the example ends there). Each piece of the pattern is tokenised on its
// own; for decoders whitespace before {mask} belongs to the verbalizer word (" great").
// Truncation shortens {text} / {text_b} (the longer first), never the pattern or the mask.
// PET's auxiliary language-modelling loss (masked LMs, --pet-mlm-weight α > 0): each training
// batch of B labelled records is paired with the next B examples of --unlabeled-data (in file
// order, cycling): texts through the pattern, then masked as --task mlm masks (15%, 80/10/10,
// seeded); pre-tokenised {"input_ids", "labels"} records keep their labels. With N the batch's
// normaliser (its labelled records),
//   loss = (1 − α) · Σ CE / N + α · (B / N) · L_MLM      (L_MLM: mean over the masked tokens)
// which is PET's (1 − α)·L_CE + α·L_MLM for one batch; evaluation reports the CE alone.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "objectives/classification.h"

namespace peft {

struct PatternPiece {
  enum class Kind { Literal, Text, TextB, Mask } kind = Kind::Literal;
  std::string literal;
};

// Parses "{text} It was {mask}." — placeholders {text}, {text_b}, {mask} (exactly one) and
// literal text; an unknown placeholder or a missing / repeated mask is an error naming it.
std::vector<PatternPiece> parse_pattern(const std::string& pattern);

// label -> words, in the order given (inline JSON object or a file holding one); a word is a
// string or a list of strings.
std::vector<std::pair<std::string, std::vector<std::string>>> parse_verbalizer(
    const std::string& text_or_path);

class PetObjective final : public ClassificationObjective {
 public:
  PetObjective(const ObjectiveContext& ctx, const ObjectiveConfig& cfg, const std::string& pattern);
  Var scores(const Batch& batch, const ForwardContext& fwd) override;
  Var loss(const Batch& batch, float normaliser, const ForwardContext& fwd) override;
  // The verbalizer's token ids, label by label.
  const std::vector<std::vector<int32_t>>& verbalizer_ids() const { return label_tokens_; }

 private:
  Example build(const ClassRecord& record, int32_t class_index) override;
  std::vector<int32_t> read_positions(const Batch& batch) const override;

  std::vector<PatternPiece> pattern_;
  bool masked_lm_;
  std::string mask_prefix_;  // decoders: whitespace moved into the word
  std::vector<std::vector<int32_t>> label_tokens_;
  std::vector<int32_t> flat_tokens_;         // every verbalizer token, label by label
  Var averaging_;                            // [L, K]: 1/|V_l| where token k belongs to l
  std::unique_ptr<BatchBuilder> unlabeled_;  // the auxiliary MLM examples
  size_t next_unlabeled_ = 0;
};

std::unique_ptr<Objective> make_pet_objective(const ObjectiveContext& ctx,
                                              const ObjectiveConfig& cfg);

}  // namespace peft
