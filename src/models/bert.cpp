// BERT as BertForMaskedLM (Devlin et al. 2019; post-LN encoder):
//   e = LayerNorm(word[ids] + position[t] + token_type[tt])                    [B, T, C]
//   per layer:  a = attention(x·Wqᵀ+bq, x·Wkᵀ+bk, x·Wvᵀ+bv) bidirectional, padding keys masked
//               x = LayerNorm(a·Woᵀ + bo + x)
//               x = LayerNorm(gelu(x·W1ᵀ + b1)·W2ᵀ + b2 + x)          (GELU with erf)
//   MLM head:   t = LayerNorm(gelu(x·Wtᵀ + bt));  logits = t·wordᵀ + bias (decoder tied to word)
// Checkpoints with or without the "bert." prefix and with gamma / beta LayerNorm names load alike.
#include <algorithm>

#include <fmt/format.h>

#include "models/families.h"
#include "models/model.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/norm.h"

namespace peft {
namespace {

std::string layer_prefix(int64_t i) {
  return fmt::format("bert.encoder.layer.{}.", i);
}

float config_float(const HFConfig& c, const char* key, float fallback) {
  if (c.raw.contains(key) && c.raw[key].is_number()) return c.raw[key].get<float>();
  return fallback;
}

class Bert final : public Model {
 public:
  Bert(HFConfig c, const ArchSpec& arch, std::map<std::string, Tensor> tensors)
      : Model(std::move(c), arch) {
    auto take = [&](const std::string& name) { return take_weight(tensors, name); };
    auto take_norm = [&](Norm& n, const std::string& prefix) {
      n.weight = take(prefix + ".weight");
      n.bias = take(prefix + ".bias");
    };
    const HFConfig& cfg = config_;
    word_ = take("bert.embeddings.word_embeddings.weight");
    position_ = take("bert.embeddings.position_embeddings.weight");
    token_type_ = take("bert.embeddings.token_type_embeddings.weight");
    take_norm(embed_norm_, "bert.embeddings.LayerNorm");
    const std::vector<LinearSite> sites = bert_linear_sites(cfg);
    size_t k = 0;
    layers_.resize(size_t(cfg.num_hidden_layers));
    for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
      Layer& L = layers_[size_t(i)];
      const std::string p = layer_prefix(i);
      for (LinearWeights* w : {&L.query, &L.key, &L.value, &L.attn_out, &L.inter, &L.out}) {
        *w = take_linear(tensors, sites[k++], true);
        sites_.push_back(w);
      }
      take_norm(L.attn_norm, p + "attention.output.LayerNorm");
      take_norm(L.out_norm, p + "output.LayerNorm");
    }
    transform_ = take_linear(tensors, sites[k++], true);
    sites_.push_back(&transform_);
    take_norm(transform_norm_, "cls.predictions.transform.LayerNorm");
    decoder_ = cfg.tie_word_embeddings ? word_ : take("cls.predictions.decoder.weight");
    bias_ = take("cls.predictions.bias");
    hidden_dropout_ = config_float(cfg, "hidden_dropout_prob", 0.1f);
  }

  Var run_forward(const ModelInputs& in, const ForwardContext& ctx) override {
    PEFT_CHECK(ctx.cache == nullptr, "BERT is bidirectional: no KV cache");
    ModelHooks* hooks = ctx.hooks;
    const HFConfig& c = config_;
    const Tensor& ids = in.input_ids;
    const int64_t B = ids.dim(0), T = ids.dim(1);
    const int64_t H = c.num_attention_heads, D = c.head_dim, C = c.hidden_size;
    Var x = embedding(word_, ids);
    if (hooks) x = hooks->input_embeddings(x);
    const int64_t Tt = x->value.dim(1), P = Tt - T;
    // Token types: P zeros for virtual tokens (as PEFT pads them), then the batch's own.
    Tensor types = Tensor::zeros({B, Tt}, DType::I32);
    if (in.token_type_ids.defined())
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
          types.data<int32_t>()[b * Tt + P + t] = in.token_type_ids.data<int32_t>()[b * T + t];
    // With a key/value prefix of N slots the tokens take positions N ... (transformers' BERT
    // with past_key_values, as PEFT's prefix tuning runs it).
    const Tensor positions = token_positions(in, P, hooks ? hooks->num_prefix_tokens() : 0);
    const int32_t* pos = positions.data<int32_t>();
    const int32_t last = positions.numel() ? *std::max_element(pos, pos + positions.numel()) : 0;
    if (last >= c.max_position_embeddings)
      fail("sequence of {} tokens exceeds max_position_embeddings {}", int64_t(last) + 1,
           c.max_position_embeddings);
    x = add(x, embedding(position_, positions));
    x = add(x, embedding(token_type_, types));
    const float eps = float(c.layer_norm_eps);
    x = training_dropout(layer_norm(x, embed_norm_.weight, embed_norm_.bias, eps),
                         hidden_dropout_, ctx);

    AttentionOptions opts;
    opts.causal = false;
    opts.segment_ids = token_segments(in, P);
    if (in.attention_mask.defined()) {
      Tensor mask = Tensor::zeros({B, Tt}, DType::I32);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < Tt; ++t)
          mask.data<int32_t>()[b * Tt + t] =
              t < P ? 1 : in.attention_mask.data<int32_t>()[b * T + t - P];
      opts.key_mask = mask;
    }
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      Layer& L = layers_[size_t(i)];
      Var q = reshape(project(x, L.query, hooks), {B, Tt, H, D});
      Var k = reshape(project(x, L.key, hooks), {B, Tt, H, D});
      Var v = reshape(project(x, L.value, hooks), {B, Tt, H, D});
      std::optional<KvPrefix> prefix = hooks ? hooks->kv_prefix(int(i), B) : std::nullopt;
      Var a =
          prefix ? attention(q, k, v, opts, prefix->key, prefix->value) : attention(q, k, v, opts);
      Var h =
          training_dropout(project(reshape(a, {B, Tt, C}), L.attn_out, hooks), hidden_dropout_, ctx);
      if (hooks) {
        const SublayerNorm norm = [&](const Var& y) {
          return layer_norm(y, L.attn_norm.weight, L.attn_norm.bias, eps);
        };
        h = hooks->after_sublayer(int(i), Sublayer::Attention, h, x, &norm);
      }
      x = layer_norm(add(h, x), L.attn_norm.weight, L.attn_norm.bias, eps);
      Var f = project(gelu(project(x, L.inter, hooks)), L.out, hooks);
      f = training_dropout(f, hidden_dropout_, ctx);
      if (hooks) {
        const SublayerNorm norm = [&](const Var& y) {
          return layer_norm(y, L.out_norm.weight, L.out_norm.bias, eps);
        };
        f = hooks->after_sublayer(int(i), Sublayer::FeedForward, f, x, &norm);
      }
      x = layer_norm(add(f, x), L.out_norm.weight, L.out_norm.bias, eps);
    }
    return x;
  }

  // Masked LM: only rows whose label is not ignored go through the head (usually ~15%), so
  // their logits [M, V] are small; the loss is the cross-entropy op on them.
  Var loss(const Var& hidden, const Tensor& labels, const CrossEntropyOptions& opts,
           CrossEntropyStats* stats) override {
    const int64_t B = hidden->value.dim(0), Tt = hidden->value.dim(1);
    PEFT_CHECK(labels.ndim() == 2 && labels.dim(0) == B && labels.dim(1) <= Tt &&
                   labels.dtype() == DType::I32,
               "labels {} for hidden {}", labels.describe(), hidden->value.describe());
    const int64_t T = labels.dim(1), P = Tt - T;
    std::vector<int32_t> rows, targets;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        const int32_t l = labels.data<int32_t>()[b * T + t];
        if (l == opts.ignore_index) continue;
        rows.push_back(int32_t(b * Tt + P + t));
        targets.push_back(l);
      }
    if (rows.empty()) {  // nothing to score: the op's "all ignored" result
      return cross_entropy_from_logits(constant(Tensor::zeros({1, config_.vocab_size})),
                                       Tensor::from_vector_i32({opts.ignore_index}, {1}), opts,
                                       stats);
    }
    Var logits = linear(head_transform(gather_rows(hidden, rows), ctx_.hooks), decoder_, bias_);
    return cross_entropy_from_logits(
        logits, Tensor::from_vector_i32(targets, {int64_t(targets.size())}), opts, stats);
  }

  Var logits(const Var& hidden) override {
    return linear(head_transform(hidden, ctx_.hooks), decoder_, bias_);
  }

 protected:
  Var head_transform(const Var& hidden, ModelHooks* hooks) override {
    Var t = gelu(project(hidden, transform_, hooks));
    return layer_norm(t, transform_norm_.weight, transform_norm_.bias,
                      float(config_.layer_norm_eps));
  }
  Var head_weight() const override { return decoder_; }
  Var head_bias() const override { return bias_; }

 private:
  struct Norm {
    Var weight, bias;
  };
  struct Layer {
    LinearWeights query, key, value, attn_out, inter, out;
    Norm attn_norm, out_norm;
  };
  Var word_, position_, token_type_, decoder_, bias_;
  Norm embed_norm_, transform_norm_;
  LinearWeights transform_;
  std::vector<Layer> layers_;
  float hidden_dropout_ = 0.1f;
};

}  // namespace

std::vector<TensorSpec> bert_tensors(const HFConfig& c) {
  using Init = TensorSpec::Init;
  const int64_t C = c.hidden_size, I = c.intermediate_size;
  std::vector<TensorSpec> out;
  auto norm = [&](const std::string& p) {
    out.push_back({p + ".weight", {C}, Init::Ones});
    out.push_back({p + ".bias", {C}, Init::Zeros});
  };
  auto lin = [&](const std::string& p, int64_t o, int64_t in) {
    out.push_back({p + ".weight", {o, in}});
    out.push_back({p + ".bias", {o}, Init::Zeros});
  };
  out.push_back(
      {"bert.embeddings.word_embeddings.weight", {c.vocab_size, C}, Init::Normal, c.pad_token_id});
  out.push_back({"bert.embeddings.position_embeddings.weight", {c.max_position_embeddings, C}});
  out.push_back({"bert.embeddings.token_type_embeddings.weight", {c.type_vocab_size, C}});
  norm("bert.embeddings.LayerNorm");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = layer_prefix(i);
    lin(p + "attention.self.query", C, C);
    lin(p + "attention.self.key", C, C);
    lin(p + "attention.self.value", C, C);
    lin(p + "attention.output.dense", C, C);
    norm(p + "attention.output.LayerNorm");
    lin(p + "intermediate.dense", I, C);
    lin(p + "output.dense", C, I);
    norm(p + "output.LayerNorm");
  }
  lin("cls.predictions.transform.dense", C, C);
  norm("cls.predictions.transform.LayerNorm");
  if (!c.tie_word_embeddings) out.push_back({"cls.predictions.decoder.weight", {c.vocab_size, C}});
  out.push_back({"cls.predictions.bias", {c.vocab_size}, Init::Zeros});
  return out;
}

std::vector<LinearSite> bert_linear_sites(const HFConfig& c) {
  const int64_t C = c.hidden_size, I = c.intermediate_size;
  std::vector<LinearSite> out;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = layer_prefix(i);
    out.push_back(linear_site(p + "attention.self.query", i, C, C));
    out.push_back(linear_site(p + "attention.self.key", i, C, C));
    out.push_back(linear_site(p + "attention.self.value", i, C, C));
    out.push_back(linear_site(p + "attention.output.dense", i, C, C));
    out.push_back(linear_site(p + "intermediate.dense", i, C, I));
    out.push_back(linear_site(p + "output.dense", i, I, C));
  }
  out.push_back(linear_site("cls.predictions.transform.dense", -1, C, C));
  return out;
}

std::string bert_canonical_name(const std::string& stored, const HFConfig& c) {
  std::string name = stored;
  if (name.starts_with("embeddings.") || name.starts_with("encoder.") ||
      name.starts_with("pooler."))
    name = "bert." + name;
  if (name.ends_with(".gamma")) name = name.substr(0, name.size() - 6) + ".weight";
  if (name.ends_with(".beta")) name = name.substr(0, name.size() - 5) + ".bias";
  // Known and unused here: the position_ids buffer, the pooler and next-sentence head of
  // BertForPreTraining checkpoints and, when tied, the decoder weight (the word embeddings).
  if (name == "bert.embeddings.position_ids" || name.starts_with("bert.pooler.") ||
      name.starts_with("cls.seq_relationship."))
    return "";
  // transformers ties the decoder bias to cls.predictions.bias and may save either name.
  if (name == "cls.predictions.decoder.bias") return "cls.predictions.bias";
  if (name == "cls.predictions.decoder.weight" && c.tie_word_embeddings) return "";
  return name;
}

std::unique_ptr<Model> build_bert(HFConfig c, const ArchSpec& arch,
                                  std::map<std::string, Tensor> tensors) {
  return std::make_unique<Bert>(std::move(c), arch, std::move(tensors));
}

}  // namespace peft
