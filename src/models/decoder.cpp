// Decoder-only transformers: Qwen2, Llama and Baichuan-7B (pre-norm, RMSNorm, RoPE, SwiGLU).
//   x = embed(ids)                                               [B, T, C]
//   per layer:  h = rms_norm(x);  q, k, v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)
//               (Baichuan: one W_pack [3C, C] = rows [Wq; Wk; Wv], applied once, then split)
//               q, k = rope(q), rope(k) at positions p0 + t;  a = attention(q, k, v) causal, GQA
//               x = x + a·Woᵀ;  x = x + down(silu(gate(rms_norm(x))) ⊙ up(rms_norm(x)))
//   hidden = rms_norm(x);  logits = hidden · Wheadᵀ (Whead = embed when tied)
// Shapes: C hidden, H / Hkv heads, D head dim, I intermediate, V vocab.
#include <fmt/format.h>

#include "autograd/recompute.h"
#include "models/families.h"
#include "models/model.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace peft {
namespace {

std::string layer_prefix(int64_t i) {
  return fmt::format("model.layers.{}.", i);
}

bool packed_qkv(const HFConfig& c) {
  return c.model_type == "baichuan";
}
bool qkv_bias(const HFConfig& c) {
  return c.attention_bias;
}
bool o_bias(const HFConfig& c) {
  return c.model_type == "llama" && c.attention_bias;
}

class Decoder final : public Model {
 public:
  Decoder(HFConfig c, const ArchSpec& arch, std::map<std::string, Tensor> tensors)
      : Model(std::move(c), arch) {
    auto take = [&](const std::string& name) { return take_weight(tensors, name); };
    const HFConfig& cfg = config_;
    embed_ = take("model.embed_tokens.weight");
    layers_.resize(size_t(cfg.num_hidden_layers));
    const std::vector<LinearSite> sites = decoder_linear_sites(cfg);
    size_t k = 0;
    for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
      Layer& L = layers_[size_t(i)];
      const std::string p = layer_prefix(i);
      L.ln1 = take(p + "input_layernorm.weight");
      L.ln2 = take(p + "post_attention_layernorm.weight");
      if (packed_qkv(cfg)) {
        L.w_pack = take_linear(tensors, sites[k++], false);
      } else {
        L.q = take_linear(tensors, sites[k++], qkv_bias(cfg));
        L.k = take_linear(tensors, sites[k++], qkv_bias(cfg));
        L.v = take_linear(tensors, sites[k++], qkv_bias(cfg));
      }
      L.o = take_linear(tensors, sites[k++], o_bias(cfg));
      L.gate = take_linear(tensors, sites[k++], cfg.mlp_bias);
      L.up = take_linear(tensors, sites[k++], cfg.mlp_bias);
      L.down = take_linear(tensors, sites[k++], cfg.mlp_bias);
      for (LinearWeights* w : {&L.w_pack, &L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
        if (w->weight) sites_.push_back(w);
    }
    norm_ = take("model.norm.weight");
    head_ = cfg.tie_word_embeddings ? embed_ : take("lm_head.weight");
  }

  Var run_forward(const ModelInputs& in, const ForwardContext& ctx) override {
    ModelHooks* hooks = ctx.hooks;
    KVCache* cache = ctx.cache;
    const HFConfig& c = config_;
    const Tensor& ids = in.input_ids;
    const int64_t B = ids.dim(0), T = ids.dim(1);
    const int64_t H = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
    Var x = embedding(embed_, ids);
    // Virtual tokens go in front of the sequence once: with a cache, on its first step only.
    if (hooks && (!cache || cache->length() == 0)) x = hooks->input_embeddings(x);
    const int64_t Tt = x->value.dim(1), P = Tt - T;  // P virtual tokens in front

    // Key mask [B, Tt]: P valid virtual tokens, then the batch's own mask.
    Tensor mask;
    if (in.attention_mask.defined() || (cache && P > 0)) {
      mask = Tensor::zeros({B, Tt}, DType::I32);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < Tt; ++t)
          mask.data<int32_t>()[b * Tt + t] = t < P || !in.attention_mask.defined()
                                                 ? 1
                                                 : in.attention_mask.data<int32_t>()[b * T + t - P];
    }
    int64_t start = hooks ? hooks->num_prefix_tokens() : 0;
    if (cache) {
      PEFT_CHECK(cache->batch() == B, "KV cache for {} sequences given {}", cache->batch(), B);
      start += cache->length();
      mask = cache->append_mask(mask, Tt);
    }
    const float theta = float(c.rope_theta), eps = float(c.rms_norm_eps);
    // Explicit positions (packed records restart at 0) go through the position table; the
    // common case rotates by start + t directly.
    const Tensor positions = in.position_ids.defined() ? token_positions(in, P, start) : Tensor();
    const Tensor segments = token_segments(in, P);
    PEFT_CHECK(!segments.defined() || !cache, "packed rows (segment_ids) cannot use a KV cache");
    // One layer; it captures by value, since with ctx.recompute_layers it runs again in backward.
    auto layer = [=, this](int64_t i, Var x) {
      auto rotate = [&](const Var& t) {
        return positions.defined() ? rope(t, positions, theta) : rope(t, start, theta);
      };
      Layer& L = layers_[size_t(i)];
      Var h = rms_norm(x, L.ln1, eps);
      Var q, k, v;
      if (L.w_pack.weight) {
        Var qkv = project(h, L.w_pack, hooks);  // [B, Tt, 3C]: one LoRA branch covers all three
        q = slice(qkv, -1, 0, H * D);
        k = slice(qkv, -1, H * D, 2 * H * D);
        v = slice(qkv, -1, 2 * H * D, 3 * H * D);
      } else {
        q = project(h, L.q, hooks);
        k = project(h, L.k, hooks);
        v = project(h, L.v, hooks);
      }
      q = rotate(reshape(q, {B, Tt, H, D}));
      k = rotate(reshape(k, {B, Tt, Hkv, D}));
      v = reshape(v, {B, Tt, Hkv, D});
      if (cache) {
        auto [K, V] = cache->append(int(i), k->value, v->value);
        k = constant(K);
        v = constant(V);
      }
      AttentionOptions opts;
      opts.causal = true;
      opts.key_mask = mask;
      opts.segment_ids = segments;
      std::optional<KvPrefix> prefix = hooks ? hooks->kv_prefix(int(i), B) : std::nullopt;
      Var a =
          prefix ? attention(q, k, v, opts, prefix->key, prefix->value) : attention(q, k, v, opts);
      Var o = project(reshape(a, {B, Tt, H * D}), L.o, hooks);
      if (hooks) o = hooks->after_sublayer(int(i), Sublayer::Attention, o, x, nullptr);
      x = add(x, o);
      Var h2 = rms_norm(x, L.ln2, eps);
      Var gate = project(h2, L.gate, hooks);  // HF order: gate, up, down (hooks see it)
      Var up = project(h2, L.up, hooks);
      Var m = project(swiglu(gate, up), L.down, hooks);
      if (hooks) m = hooks->after_sublayer(int(i), Sublayer::FeedForward, m, x, nullptr);
      return add(x, m);
    };
    for (int64_t i = 0; i < c.num_hidden_layers; ++i)
      x = ctx.recompute_layers && !cache
              ? recompute_in_backward(
                    x, [layer, i](const Var& in) { return layer(i, in); }, ctx.dropout_rng)
              : layer(i, x);
    if (cache) cache->advance(Tt);
    return rms_norm(x, norm_, eps);
  }

  Var loss(const Var& hidden, const Tensor& labels, const CrossEntropyOptions& opts,
           CrossEntropyStats* stats) override {
    const int64_t B = hidden->value.dim(0), Tt = hidden->value.dim(1);
    PEFT_CHECK(labels.ndim() == 2 && labels.dim(0) == B && labels.dim(1) <= Tt &&
                   labels.dtype() == DType::I32,
               "labels {} for hidden {}", labels.describe(), hidden->value.describe());
    const int64_t T = labels.dim(1), P = Tt - T;
    // Position t predicts the label at t + 1 (HF's shift); the virtual tokens have none.
    Tensor targets = Tensor::zeros({B * Tt}, DType::I32);
    int32_t* tg = targets.data<int32_t>();
    const int32_t* lb = labels.data<int32_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Tt; ++t) {
        const int64_t j = t + 1 - P;  // index into labels of the next token
        tg[b * Tt + t] = t + 1 < Tt && j >= 0 ? lb[b * T + j] : opts.ignore_index;
      }
    return cross_entropy(hidden, head_, targets, opts, stats);
  }

  Var logits(const Var& hidden) override { return linear(hidden, head_); }

 protected:
  Var head_weight() const override { return head_; }

 private:
  struct Layer {
    Var ln1, ln2;
    LinearWeights w_pack, q, k, v, o, gate, up, down;
  };
  Var embed_, norm_;
  Var head_;  // lm_head.weight, or the embeddings when tied
  std::vector<Layer> layers_;
};

}  // namespace

std::vector<TensorSpec> decoder_tensors(const HFConfig& c) {
  using Init = TensorSpec::Init;
  const int64_t C = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
  const int64_t q = c.num_attention_heads * D, kv = c.num_key_value_heads * D;
  std::vector<TensorSpec> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, C}, Init::Normal, c.pad_token_id});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = layer_prefix(i);
    out.push_back({p + "input_layernorm.weight", {C}, Init::Ones});
    auto lin = [&](const std::string& name, int64_t o, int64_t in, bool bias) {
      out.push_back({p + name + ".weight", {o, in}});
      if (bias) out.push_back({p + name + ".bias", {o}, Init::Zeros});
    };
    if (packed_qkv(c)) {
      lin("self_attn.W_pack", 3 * C, C, false);
    } else {
      lin("self_attn.q_proj", q, C, qkv_bias(c));
      lin("self_attn.k_proj", kv, C, qkv_bias(c));
      lin("self_attn.v_proj", kv, C, qkv_bias(c));
    }
    lin("self_attn.o_proj", C, q, o_bias(c));
    out.push_back({p + "post_attention_layernorm.weight", {C}, Init::Ones});
    lin("mlp.gate_proj", I, C, c.mlp_bias);
    lin("mlp.up_proj", I, C, c.mlp_bias);
    lin("mlp.down_proj", C, I, c.mlp_bias);
  }
  out.push_back({"model.norm.weight", {C}, Init::Ones});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, C}});
  return out;
}

std::vector<LinearSite> decoder_linear_sites(const HFConfig& c) {
  const int64_t C = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
  const int64_t q = c.num_attention_heads * D, kv = c.num_key_value_heads * D;
  std::vector<LinearSite> out;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = layer_prefix(i);
    if (packed_qkv(c)) {
      out.push_back(linear_site(p + "self_attn.W_pack", i, C, 3 * C));
    } else {
      out.push_back(linear_site(p + "self_attn.q_proj", i, C, q));
      out.push_back(linear_site(p + "self_attn.k_proj", i, C, kv));
      out.push_back(linear_site(p + "self_attn.v_proj", i, C, kv));
    }
    out.push_back(linear_site(p + "self_attn.o_proj", i, q, C));
    out.push_back(linear_site(p + "mlp.gate_proj", i, C, I));
    out.push_back(linear_site(p + "mlp.up_proj", i, C, I));
    out.push_back(linear_site(p + "mlp.down_proj", i, I, C));
  }
  // lm_head is no site: the loss fuses it into the chunked cross-entropy, and PEFT's
  // "all-linear" leaves the output layer out as well.
  return out;
}

std::string decoder_canonical_name(const std::string& stored, const HFConfig& c) {
  // Older Llama / Baichuan checkpoints carry the rotary inverse frequencies as a buffer.
  if (stored.ends_with(".rotary_emb.inv_freq")) return "";
  // A tied checkpoint may still hold the head: transformers ties it to the embeddings.
  if (stored == "lm_head.weight" && c.tie_word_embeddings) return "";
  return stored;
}

std::unique_ptr<Model> build_decoder(HFConfig c, const ArchSpec& arch,
                                     std::map<std::string, Tensor> tensors) {
  return std::make_unique<Decoder>(std::move(c), arch, std::move(tensors));
}

}  // namespace peft
