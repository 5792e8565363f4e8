// What the classification objectives (pet, seq-cls) share. Records {"text", "text_b"?, "label"?}
// (label a string or a number; absent when only predicting). Each record becomes one Example
// whose labels hold the class index at the position the class is read from and −100 elsewhere.
// A subclass builds the example and the class scores s [B, L] of a batch; then
//   p = softmax(s),   loss = Σ_records −log p[label] / normaliser
// and evaluation reports loss, accuracy, macro-F1, the confusion matrix and every record's p.
// Distillation (PET / iPET): a record with "soft_labels" {label: q_l} (a pattern ensemble's
// temperature-T distribution, `peft classify --distill-out`) is trained with
//   loss_r = T² · Σ_l q_l (log q_l − log softmax(s / T)_l)       (KL(q ‖ p_T), T = 2 default)
// and evaluated against argmax q. Its example keeps L + (its index in soft_targets_) at the read
// position, so batches need no new field.
#pragma once

#include <string>
#include <vector>

#include "objectives/objective.h"

namespace peft {

struct ClassRecord {
  std::string text, text_b;
  std::string label;                                        // "" when the record has none
  std::vector<std::pair<std::string, double>> soft_labels;  // distillation targets, or empty
  int64_t line = 0;
};

// Reads classification records; a record without "text" is an error naming the line.
std::vector<ClassRecord> read_class_records(const std::string& path);

class ClassificationObjective : public Objective {
 public:
  ClassificationObjective(const ObjectiveContext& ctx, const ObjectiveConfig& cfg)
      : ctx_(ctx), cfg_(cfg) {}
  const std::vector<std::string>& labels() const { return labels_; }

  std::vector<Example> read(const std::string& path, bool eval) override;
  Var loss(const Batch& batch, float normaliser, const ForwardContext& fwd) override;
  EvalMetrics evaluate(const BatchBuilder& data, ModelHooks* hooks) override;
  // Class scores [B, L] of a batch (rows in batch order), recorded when a tape is live; fwd goes
  // to the model's forward.
  virtual Var scores(const Batch& batch, const ForwardContext& fwd) = 0;

 protected:
  // The example of a record (labels: class index at the read position) and the read position
  // (token index within the row) of each row of a batch.
  virtual Example build(const ClassRecord& record, int32_t class_index) = 0;
  virtual std::vector<int32_t> read_positions(const Batch& batch) const = 0;
  // Flat row indices b·(P + T) + P + t of the read positions in hidden [B, P + T, C].
  std::vector<int32_t> read_rows(const Batch& batch, const Var& hidden) const;
  // The class index of each row (−100 when unlabelled), from the labels at the read positions.
  std::vector<int32_t> targets(const Batch& batch) const;
  // Last real token of each row (attention_mask), for decoders.
  static std::vector<int32_t> last_tokens(const Batch& batch);
  // Class index of a record's label; an unknown label is an error naming the line. A record
  // with soft labels gets L + the index of its distribution in soft_targets_.
  int32_t class_index(const ClassRecord& r, const std::string& path);
  // The hard class of a target value (argmax q for soft ones; −100 stays).
  int32_t hard_target(int32_t value) const;
  // Truncation keeps the template and shortens text, then text_b (the longer first).
  static void fit_pieces(std::vector<int32_t>& a, std::vector<int32_t>& b, int64_t room);

  ObjectiveContext ctx_;
  ObjectiveConfig cfg_;
  std::vector<std::string> labels_;
  std::vector<std::vector<float>> soft_targets_;  // per soft record, q in label order
};

}  // namespace peft
