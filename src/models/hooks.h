// The five places where a PEFT method plugs into a model (DESIGN.md, "How a PEFT method plugs
// in"). Declared beside the models because the model is what calls them; src/peft/ implements
// them, so model code never names a method. Every hook has a do-nothing default; several methods
// may be stacked with HookStack.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/error.h"
#include "ops/linear.h"

namespace peft {

class KVCache;
class Rng;

class ModelHooks;

// What one forward pass is, decided once by its caller (the trainer, evaluation, generation) and
// handed to the model and, through begin_forward, to every hook: the attached methods, training
// or not (every dropout — the model's hidden dropout, LoRA's, the P-Tuning LSTM's — follows
// `training`; the dropout ops themselves apply whatever they are asked), the dropout RNG and the
// KV cache. Nothing else decides "training".
struct ForwardContext {
  ModelHooks* hooks = nullptr;  // the attached methods (a HookStack when several); null: none
  bool training = false;        // dropout on
  Rng* dropout_rng = nullptr;   // required when training with dropout > 0
  KVCache* cache = nullptr;     // decoders at inference; null otherwise
  int64_t batch = 0;            // B of this forward (the model fills it in)
  // Activation checkpointing (decoders, training): keep each layer's input only and recompute
  // the layer in backward (autograd/recompute.h).
  bool recompute_layers = false;
};

// A weight projection of the model, named as Hugging Face names the module, e.g.
// "model.layers.0.self_attn.q_proj" or "bert.encoder.layer.3.attention.self.query".
struct LinearSite {
  std::string module;  // full HF module path (LoRA target matching and adapter keys use it)
  std::string name;    // last path component: "q_proj", "W_pack", "query", ...
  int layer = -1;      // transformer layer index, -1 outside the layers (e.g. the head)
  int64_t in_features = 0, out_features = 0;
};

// The site of an HF module path (its name is the path's last component); layer −1 outside the
// transformer layers.
inline LinearSite linear_site(const std::string& module, int64_t layer, int64_t in, int64_t out) {
  return {module, module.substr(module.find_last_of('.') + 1), int(layer), in, out};
}

// Extra keys/values that every query of one attention layer sees: [B or 1, P, Hkv, D] each.
struct KvPrefix {
  Var key;
  Var value;
};

enum class Sublayer { Attention, FeedForward };

// A post-LN model's own LayerNorm of a sublayer (BERT: attention.output.LayerNorm,
// output.LayerNorm), handed to hook 4 so AdapterHub's Pfeiffer placement LN(h + A(LN(h + x)) + x)
// can be expressed; pre-LN decoders pass none.
using SublayerNorm = std::function<Var(const Var&)>;

class ModelHooks {
 public:
  virtual ~ModelHooks() = default;

  // 0. Once per forward, before anything else: where an encoder (P-Tuning's MLP / LSTM, the
  //    prefix projection) runs once per step rather than once per layer.
  virtual void begin_forward(const ForwardContext& /*ctx*/) {}

  // 1. Input embeddings [B, T, C] -> [B, T + P, C]: prompt tuning / P-Tuning put P virtual-token
  //    embeddings in front. The model extends positions, masks and labels by P.
  virtual Var input_embeddings(const Var& embeddings) { return embeddings; }
  virtual int64_t num_virtual_tokens() const { return 0; }

  // 2. Per-layer key/value prefix (prefix tuning, P-Tuning v2) for a batch of B sequences.
  virtual std::optional<KvPrefix> kv_prefix(int /*layer*/, int64_t /*batch*/) {
    return std::nullopt;
  }
  virtual int64_t num_prefix_tokens() const { return 0; }

  // 3. Linear layers: a LoRA branch beside the frozen weight of this site, or nullptr.
  virtual const LoraBranch* linear_branch(const LinearSite& /*site*/) { return nullptr; }
  // Every branch at this site (several adapters stacked: their deltas add up).
  virtual void linear_branches(const LinearSite& site, std::vector<const LoraBranch*>& out) {
    if (const LoraBranch* b = linear_branch(site)) out.push_back(b);
  }

  // 4. After a sublayer: h is the sublayer's output, x its input (the residual stream). Returns
  //    what replaces h (bottleneck adapters: h + up(act(down(h))), placed as FORMATS.md says);
  //    the model then adds the residual (decoders: x + h'; BERT: LN(h' + x)). norm is the
  //    sublayer's LayerNorm for post-LN models, nullptr for pre-LN ones.
  virtual Var after_sublayer(int /*layer*/, Sublayer /*which*/, const Var& h, const Var& /*x*/,
                             const SublayerNorm* /*norm*/) {
    return h;
  }

  // 5. The output head is read, not changed: PET scores labels from the model's logits at the
  //    mask position restricted to the verbalizer's tokens (Model::token_logits), so this hook
  //    site needs no callback.
};

// Several methods at once (e.g. LoRA + prefix): each hook is applied in order; at a linear site
// the LoRA branches of every method add up; at most one method gives a key/value prefix.
class HookStack final : public ModelHooks {
 public:
  // Two methods that both hand the layers a key/value prefix cannot be stacked (throws Error).
  void add(std::shared_ptr<ModelHooks> hooks);
  bool empty() const { return hooks_.empty(); }

  void begin_forward(const ForwardContext& ctx) override {
    for (auto& h : hooks_) h->begin_forward(ctx);
  }

  Var input_embeddings(const Var& embeddings) override {
    Var e = embeddings;
    for (auto& h : hooks_) e = h->input_embeddings(e);
    return e;
  }
  int64_t num_virtual_tokens() const override {
    int64_t n = 0;
    for (auto& h : hooks_) n += h->num_virtual_tokens();
    return n;
  }
  std::optional<KvPrefix> kv_prefix(int layer, int64_t batch) override {
    for (auto& h : hooks_)
      if (auto p = h->kv_prefix(layer, batch)) return p;  // at most one (add() checks)
    return std::nullopt;
  }
  int64_t num_prefix_tokens() const override {
    for (auto& h : hooks_)
      if (h->num_prefix_tokens()) return h->num_prefix_tokens();
    return 0;
  }
  const LoraBranch* linear_branch(const LinearSite& site) override {
    for (auto& h : hooks_)
      if (const LoraBranch* b = h->linear_branch(site)) return b;
    return nullptr;
  }
  void linear_branches(const LinearSite& site, std::vector<const LoraBranch*>& out) override {
    for (auto& h : hooks_) h->linear_branches(site, out);
  }
  Var after_sublayer(int layer, Sublayer which, const Var& h, const Var& x,
                     const SublayerNorm* norm) override {
    Var out = h;
    for (auto& k : hooks_) out = k->after_sublayer(layer, which, out, x, norm);
    return out;
  }

 private:
  std::vector<std::shared_ptr<ModelHooks>> hooks_;
};

inline void HookStack::add(std::shared_ptr<ModelHooks> hooks) {
  if (hooks->num_prefix_tokens() > 0)
    for (const auto& h : hooks_)
      if (h->num_prefix_tokens() > 0)
        fail(
            "two prefix-type methods (prefix tuning / P-Tuning v2) cannot be stacked: each gives "
            "every attention layer its own key/value prefix");
  hooks_.push_back(std::move(hooks));
}

}  // namespace peft
