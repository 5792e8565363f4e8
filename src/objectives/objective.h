// Training objectives: what a data file's records become (examples), the loss of a batch and the
// metrics of an evaluation — one path for `peft train`, `peft eval` and `peft classify`. One
// row per objective in objectives/registry.cpp; `--task` picks the row, cli/ names none.
//   causal-lm  next-token NLL on the record types of train/data.h (decoders)
//   mlm        BERT's masked LM: 15% of tokens selected, 80/10/10 (objectives/masking.h)
//   pet        pattern + verbalizer (objectives/pet.h): CE over the class scores at the mask
//   seq-cls    a linear head on the pooled output (objectives/seq_cls.cpp)
// Classification objectives keep the class index in Example::labels at the position the class
// is read from (the mask, the last token, [CLS]) and −100 elsewhere, so batching, truncation
// counts and the trainer's token-weighted normaliser need nothing new.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autograd/params.h"
#include "core/rng.h"
#include "models/model.h"
#include "tokenizer/tokenizer.h"
#include "train/batch.h"

namespace peft {

struct ObjectiveConfig {
  std::vector<std::string> patterns;  // pet: "{text} It was {mask}." (training uses the first)
  std::string verbalizer;             // pet: JSON object label -> word(s), inline or a file path
  std::vector<std::string> labels;    // seq-cls: class names in order (empty: from the data)
  double mask_probability = 0.15;     // mlm
  bool whole_word_mask = false;       // mlm
  double pet_mlm_weight = 0;          // pet: PET's α, loss = (1 − α)·L_CE + α·L_MLM
  std::string unlabeled_data;         // pet: the texts of the auxiliary MLM loss
  double distill_temperature = 2;     // soft_labels records: KL at this temperature
  uint64_t seed = 0;
  int64_t max_len = 512;
};

// What an objective works on: the model, its tokenizer and its folder (seq-cls reads BERT's
// pooler from it).
struct ObjectiveContext {
  Model* model = nullptr;
  const Tokenizer* tokenizer = nullptr;
  std::string model_dir;
};

// Metrics of one evaluation. Classification adds accuracy, macro-F1 and the confusion matrix
// (rows: true label, columns: predicted) and the per-record class probabilities.
struct EvalMetrics {
  double loss = 0;                  // mean NLL over scored targets (tokens or records), nats
  int64_t count = 0;                // scored targets
  double accuracy = 0;              // top-1 over scored targets
  std::vector<std::string> labels;  // classification only
  std::vector<std::vector<int64_t>> confusion;     // [true][predicted]
  std::vector<std::vector<double>> scores;         // per record, the class scores
  std::vector<std::vector<double>> probabilities;  // per record, softmax of the class scores
  std::vector<int32_t> targets;                    // per record, −1 when unlabelled
  bool classification() const { return !labels.empty(); }
};

class Objective {
 public:
  virtual ~Objective() = default;
  // The examples of a data file; `eval` picks a separate masking stream (mlm).
  virtual std::vector<Example> read(const std::string& path, bool eval) = 0;
  // Decoders' causal-LM labels are shifted (position t predicts labels[t + 1]); others are not.
  virtual bool shifted() const { return false; }
  // Trainable parameters of the objective itself (the seq-cls head), declared into the method's
  // store before it is allocated, then initialised or loaded, and saved beside the adapter.
  virtual void declare(ParamStore& params) { (void)params; }
  virtual void initialize(const ParamStore& params, Rng& rng) { (void)params, (void)rng; }
  virtual void load(const ParamStore& params, const std::string& dir) { (void)params, (void)dir; }
  virtual void save(const ParamStore& params, const std::string& dir) const {
    (void)params, (void)dir;
  }
  // Σ losses / normaliser of a batch, recorded on the tape when one is live; ctx (the methods,
  // training or not, the dropout RNG) goes to the model's forward as given.
  virtual Var loss(const Batch& batch, float normaliser, const ForwardContext& ctx) = 0;
  // Scores a whole data set without recording (not training: no dropout).
  virtual EvalMetrics evaluate(const BatchBuilder& data, ModelHooks* hooks) = 0;
};

struct ObjectiveInfo {
  std::string name;
  std::string help;
  std::function<std::unique_ptr<Objective>(const ObjectiveContext&, const ObjectiveConfig&)> create;
};

const std::vector<ObjectiveInfo>& objective_registry();
const ObjectiveInfo* find_objective(const std::string& name);
std::string objective_names();
// The default for a model: mlm for BERT (a masked LM), causal-lm for decoders.
std::string default_objective(const Model& model);

// Macro-F1 = mean over labels of 2·P·R / (P + R) (0 for a label never predicted nor present)
// from a confusion matrix [true][predicted].
double macro_f1(const std::vector<std::vector<int64_t>>& confusion);

// Classification metrics of per-record class scores and targets (−1: unlabelled): softmax
// probabilities, mean NLL, accuracy and the confusion matrix (ties go to the first class).
EvalMetrics classification_metrics(const std::vector<std::string>& labels,
                                   std::vector<std::vector<double>> scores,
                                   const std::vector<int32_t>& targets);

}  // namespace peft
