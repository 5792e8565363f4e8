// A loaded model: its config, its weights (HF names, frozen, used as stored or converted at load)
// and one forward function used for training and inference alike (records on the autograd tape
// when one is live, runs with a KV cache when given one). Architectures are registry rows
// (models/registry.h); the families are models/decoder.cpp (Qwen2, Llama, Baichuan-7B) and
// models/bert.cpp (BERT masked LM). Model code calls the method hooks (models/hooks.h) and never
// names a method.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autograd/params.h"
#include "autograd/tape.h"
#include "core/rng.h"
#include "io/hf_config.h"
#include "models/hooks.h"
#include "models/kv_cache.h"
#include "ops/cross_entropy.h"

namespace peft {

struct ArchSpec;

// One batch. Sequences are right-padded: attention_mask 1 on tokens, 0 on padding. Packed rows
// (several records in one row) give each token its position within its record and a segment id
// per record: attention never crosses segments.
struct ModelInputs {
  Tensor input_ids;       // i32 [B, T]
  Tensor attention_mask;  // optional i32 [B, T]; undefined = every token valid
  Tensor token_type_ids;  // optional i32 [B, T] (BERT); undefined = all 0
  Tensor position_ids;    // optional i32 [B, T]; undefined = 0, 1, 2, ... (after any cache)
  Tensor segment_ids;     // optional i32 [B, T]; undefined = one segment per row
};

// A weight projection: its site (HF module name, used by the hooks) and its frozen weights.
struct LinearWeights {
  LinearSite site;
  Var weight;  // [out, in]
  Var bias;    // [out] or nullptr
};

struct LoadOptions {
  // Convert the matrices (2-D weights) to this dtype at load: f32, bf16, q8_0 or q4_0. Unset:
  // used as stored (f32 / bf16 / f16 mapped in place, zero-copy). Vectors (norm weights, biases)
  // are always f32. q8_0 / q4_0 apply to matrices whose rows are a multiple of 32 values; others
  // keep their stored dtype.
  std::optional<DType> base_dtype;
};

class Model {
 public:
  virtual ~Model() = default;

  const HFConfig& config() const { return config_; }
  const ArchSpec& arch() const { return *arch_; }
  bool is_causal_lm() const;

  // The forward pass: hidden states [B, P + T, C] (P = the hooks' virtual tokens) after the final
  // norm (decoders) or the last encoder layer (BERT). ctx says which methods are attached
  // (ctx.hooks), whether this is training (dropout) and, for decoders at inference, the KV cache:
  // the tokens then continue the cached ones and their keys / values are appended. The model
  // fills in ctx.batch, calls every hook's begin_forward with the context, then runs.
  Var forward(const ModelInputs& in, const ForwardContext& ctx = {});

  // The head of loss / logits / token_logits (BERT's transform.dense is a linear site) uses the
  // hooks of the last forward's context.
  // The training objective on forward's hidden states, via the chunked cross-entropy op (the
  // [tokens, vocab] logits are never all alive). labels i32 [B, T] (−100 = ignored); decoders
  // predict labels[t + 1] from position t (HF's shift), BERT scores labels at their own position
  // (masked LM). With P virtual tokens, labels get P × −100 in front.
  virtual Var loss(const Var& hidden, const Tensor& labels, const CrossEntropyOptions& opts = {},
                   CrossEntropyStats* stats = nullptr) = 0;

  // Logits [..., V] of hidden states [..., C] (inference and tests: materialises all of them).
  virtual Var logits(const Var& hidden) = 0;
  // Logits at chosen rows of hidden [B, T, C] (flat indices b·T + t) restricted to chosen vocab
  // ids: [rows, vocab] (PET reads the mask position this way, hook site 5).
  Var token_logits(const Var& hidden, const std::vector<int32_t>& rows,
                   const std::vector<int32_t>& vocab);

  // Every weight projection, in forward order, with its HF module name.
  std::vector<LinearSite> linear_sites() const;
  // Every weight by HF tensor name (as the model holds it: stored, converted or trainable).
  const std::map<std::string, Var>& weights() const { return weights_; }
  int64_t parameter_count() const;

  // Full fine-tuning: declares every weight in `params` (HF names), allocates, copies the values
  // in f32 and makes the model use the trainable copies (tied weights stay tied).
  void make_trainable(ParamStore& params);
  // Training chosen weights (e.g. LoRA's bias setting), in two steps around params.allocate():
  // declare_trainable declares each weight (HF name → parameter key) in params; bind_trainable
  // then copies the weights' values in (f32) and makes the model use the trainable copies.
  void declare_trainable(ParamStore& params, const std::map<std::string, std::string>& keys) const;
  void bind_trainable(ParamStore& params, const std::map<std::string, std::string>& keys);

 protected:
  Model(HFConfig config, const ArchSpec& arch) : config_(std::move(config)), arch_(&arch) {}
  // The family's forward, given the context forward() completed (batch filled in, every hook's
  // begin_forward called).
  virtual Var run_forward(const ModelInputs& in, const ForwardContext& ctx) = 0;
  // Applies a linear layer through the hooks (the LoRA branches of every attached adapter).
  static Var project(const Var& x, const LinearWeights& w, ModelHooks* hooks);
  // The head's pre-logit transform (BERT's dense + GELU + LayerNorm; identity for decoders), and
  // its output weight [V, C] and bias [V] (or nullptr).
  virtual Var head_transform(const Var& hidden, ModelHooks* hooks) {
    (void)hooks;
    return hidden;
  }
  virtual Var head_weight() const = 0;
  virtual Var head_bias() const { return nullptr; }
  // The name -> weight table the family fills when building (tied weights appear once).
  Var& weight(const std::string& name);
  // Building: a loaded tensor becomes a frozen weight of the table; a projection takes
  // <module>.weight and, with has_bias, <module>.bias.
  Var take_weight(std::map<std::string, Tensor>& tensors, const std::string& name);
  LinearWeights take_linear(std::map<std::string, Tensor>& tensors, const LinearSite& site,
                            bool has_bias);
  // Dropout as HF's train() mode applies it (BERT's hidden dropout): x itself unless
  // ctx.training.
  static Var training_dropout(const Var& x, float p, const ForwardContext& ctx);
  // Positions [B, P + T] of the tokens after P virtual tokens: the virtual tokens take
  // offset + 0 .. P − 1 and the batch's tokens offset + P + position_ids (or + t without them).
  static Tensor token_positions(const ModelInputs& in, int64_t P, int64_t offset);
  // in.segment_ids checked against input_ids (undefined when absent). Virtual tokens would
  // belong to no record, so packed rows cannot have them (P must be 0).
  static Tensor token_segments(const ModelInputs& in, int64_t P);
  // The context of the last forward: the head (BERT's transform.dense) runs through its hooks.
  ForwardContext ctx_;

  HFConfig config_;
  const ArchSpec* arch_;
  std::map<std::string, Var> weights_;
  std::vector<const LinearWeights*> sites_;  // filled by the family
};

// Loads DIR (config.json + safetensors) after validating every tensor name and shape against the
// architecture's table: a missing, unexpected or wrong-shaped tensor is one Error naming it with
// the expected and found shape, before anything is converted.
// A folder whose config.json names a *ForSequenceClassification architecture loads too: its head
// tensors (classifier.*, score.*; BERT's pooler) are left to the seq-cls objective, which reads
// them from the folder, and the LM head such a checkpoint lacks is zeros (unused by seq-cls).
std::unique_ptr<Model> load_model(const std::string& dir, const LoadOptions& opts = {});

// Whether config.json's architectures name a transformers *ForSequenceClassification class.
bool is_seq_cls_config(const HFConfig& config);

// Gathers rows of x [N, C] (any leading shape flattened) at `rows`: [rows.size(), C], with the
// gradient scattered back.
Var gather_rows(const Var& x, const std::vector<int32_t>& rows);

}  // namespace peft
