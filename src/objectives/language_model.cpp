// The language-modelling objectives: causal-lm (next token, decoders) and mlm (BERT's masked LM
// with real masking, objectives/masking.h). Both score tokens with the model's fused
// cross-entropy head: loss = Σ_{t: label ≠ −100} −log p(label_t) / normaliser.
#include <algorithm>

#include "autograd/tape.h"
#include "core/error.h"
#include "models/registry.h"
#include "objectives/batches.h"
#include "objectives/language_model.h"
#include "objectives/masking.h"
#include "train/data.h"

namespace peft {
namespace {

constexpr int64_t kEvalBatch = 8;

class LanguageModelObjective : public Objective {
 public:
  LanguageModelObjective(const ObjectiveContext& ctx, const ObjectiveConfig& cfg, bool masked)
      : ctx_(ctx), cfg_(cfg), masked_(masked) {
    if (masked_ && ctx_.model->is_causal_lm())
      fail("--task mlm needs a masked LM (BERT); {} is a decoder (use --task causal-lm)",
           ctx_.model->config().model_type);
    if (!masked_ && !ctx_.model->is_causal_lm())
      fail("--task causal-lm needs a decoder; {} is a masked LM (use --task mlm)",
           ctx_.model->config().model_type);
  }

  std::vector<Example> read(const std::string& path, bool eval) override {
    const int64_t vocab = ctx_.model->config().vocab_size;
    std::vector<Example> examples = read_training_records(path, ctx_.tokenizer, vocab);
    if (!masked_) return examples;
    MaskingOptions m;
    m.probability = cfg_.mask_probability;
    m.whole_word = cfg_.whole_word_mask;
    m.seed = cfg_.seed * 2 + (eval ? 1 : 0);  // evaluation masks differ from training masks
    for (size_t i = 0; i < examples.size(); ++i) {
      Example& e = examples[i];
      // Records that already say which positions to score (pre-tokenised with labels) keep them.
      if (e.labels != e.input_ids) continue;
      if (!ctx_.tokenizer || ctx_.tokenizer->special_ids().mask < 0)
        fail(
            "{} record {}: --task mlm masks text records with the model folder's tokenizer, "
            "which is missing or has no mask token (records with \"labels\" need none)",
            path, i + 1);
      mask_tokens(e, *ctx_.tokenizer, vocab, m, i);
    }
    return examples;
  }

  bool shifted() const override { return !masked_; }

  Var loss(const Batch& b, float normaliser, const ForwardContext& fwd) override {
    Var hidden = ctx_.model->forward(model_inputs(b), fwd);
    CrossEntropyOptions o;
    o.normaliser = normaliser;
    return ctx_.model->loss(hidden, b.labels, o);
  }

  EvalMetrics evaluate(const BatchBuilder& data, ModelHooks* hooks) override {
    NoGradGuard no_grad;
    CrossEntropyStats total;
    for_each_batch_in_order(data, kEvalBatch, [&](const Batch& b) {
      CrossEntropyStats s;
      Var hidden = ctx_.model->forward(model_inputs(b), {.hooks = hooks});
      ctx_.model->loss(hidden, b.labels, {}, &s);
      total.sum += s.sum, total.count += s.count, total.top1 += s.top1;
    });
    EvalMetrics m;
    m.count = total.count;
    m.loss = total.count > 0 ? total.sum / double(total.count) : 0.0;
    m.accuracy = total.count > 0 ? double(total.top1) / double(total.count) : 0.0;
    return m;
  }

 private:
  ObjectiveContext ctx_;
  ObjectiveConfig cfg_;
  bool masked_;
};

}  // namespace

std::unique_ptr<Objective> make_causal_lm_objective(const ObjectiveContext& ctx,
                                                    const ObjectiveConfig& cfg) {
  return std::make_unique<LanguageModelObjective>(ctx, cfg, false);
}

std::unique_ptr<Objective> make_mlm_objective(const ObjectiveContext& ctx,
                                              const ObjectiveConfig& cfg) {
  return std::make_unique<LanguageModelObjective>(ctx, cfg, true);
}

}  // namespace peft
