#include "peft/prompt_learning.h"

#include <algorithm>
#include <cmath>

#include "io/files.h"
#include "io/safetensors.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/lstm.h"
#include "tokenizer/tokenizer.h"

namespace peft {
namespace {

const char* const kEncoderFile = "prompt_encoder.safetensors";

// The config a factory parses: task_type, when the config does not say, is CAUSAL_LM on a decoder
// and TOKEN_CLS on a masked LM (BERT): the PEFT wrapper whose forward matches ours there (prompt
// tokens get token type 0; a prefix runs the encoder with past_key_values, token types kept,
// then the head), so PeftModel.from_pretrained picks it for our folders.
nlohmann::json with_task_type(const nlohmann::json& config, const Model& model) {
  nlohmann::json j = config;
  if (!j.contains("task_type") || j["task_type"].is_null())
    j["task_type"] = model.is_causal_lm() ? "CAUSAL_LM" : "TOKEN_CLS";
  return j;
}

// torch.nn.Linear's default init: weight and bias U(−1/√in, 1/√in).
void init_linear(const Var& w, const Var& b, Rng& rng) {
  const float bound = 1.0f / std::sqrt(float(w->value.dim(1)));
  fill_uniform(w->value, rng, -bound, bound);
  if (b) fill_uniform(b->value, rng, -bound, bound);
}

// What every prompt-learning method shares: its config, its parameter group, whether it trains an
// encoder (or the stored prompt_embeddings directly), and the PEFT folder both ways.
class PromptLearningMethod : public Method {
 public:
  PromptLearningMethod(const PromptLearningConfig& config, const MethodContext& ctx,
                       bool wants_encoder)
      : c_(config), params_(ctx.params), group_(ctx.group) {
    encoder_ = wants_encoder &&
               (ctx.adapter_dir.empty() || file_exists(join_path(ctx.adapter_dir, kEncoderFile)));
  }

  nlohmann::json config_json() const override { return c_.to_json(); }

  void save(const std::string& dir) const override {
    Tensor out;
    {
      NoGradGuard no_grad;
      out = const_cast<PromptLearningMethod*>(this)->encode(ForwardContext{})->value.clone();
    }
    write_peft_folder(dir, c_.to_json(), {{"prompt_embeddings", out}});
    if (encoder_) {
      std::vector<std::pair<std::string, Tensor>> tensors;
      for (const auto& [key, shape] : declared_) tensors.emplace_back(key, param(key)->value);
      save_safetensors(join_path(dir, kEncoderFile), tensors);
    }
  }

  std::vector<std::string> saved_files() const override {
    std::vector<std::string> files = Method::saved_files();
    if (encoder_) files.push_back(kEncoderFile);
    return files;
  }

  void load(const std::string& dir) override {
    const SafetensorsFile file(
        join_path(dir, encoder_ ? kEncoderFile : "adapter_model.safetensors"));
    for (const auto& [key, shape] : declared_)
      param(key)->value.copy_from(load_adapter_tensor(file, key, shape));
  }

  void begin_forward(const ForwardContext& ctx) override { out_ = encode(ctx); }

 protected:
  // The method's output: prompt_embeddings [P, width] (the encoder run once per forward).
  virtual Var encode(const ForwardContext& ctx) = 0;

  void declare(const std::string& key, Shape shape) {
    params_.declare(group_ + key, shape);
    declared_.emplace_back(key, std::move(shape));
  }
  const Var& param(const std::string& key) const { return params_.get(group_ + key); }
  Var maybe(const std::string& key) const {
    return params_.contains(group_ + key) ? params_.get(group_ + key) : nullptr;
  }

  PromptLearningConfig c_;
  ParamStore& params_;
  std::string group_;
  bool encoder_ = false;
  std::vector<std::pair<std::string, Shape>> declared_;
  Var out_;  // this forward's encode()
};

// Prompt tuning and P-Tuning v1: P virtual-token embeddings in front of the text.
class VirtualTokens final : public PromptLearningMethod {
 public:
  VirtualTokens(const PromptLearningConfig& config, const MethodContext& ctx)
      : PromptLearningMethod(config, ctx, config_is_ptuning(config)),
        vocab_(ctx.model.config().vocab_size),
        embed_(ctx.model.weights().count("model.embed_tokens.weight")
                   ? ctx.model.weights().at("model.embed_tokens.weight")
                   : ctx.model.weights().at("bert.embeddings.word_embeddings.weight")) {
    const int64_t P = c_.num_virtual_tokens, C = c_.token_dim, h = c_.encoder_hidden_size;
    if (C != ctx.model.config().hidden_size)
      fail("token_dim is {}, but the model's hidden_size is {}", C, ctx.model.config().hidden_size);
    if (!encoder_) {
      declare("prompt_embeddings", {P, C});
      return;
    }
    declare("prompt_encoder.embedding.weight", {P, C});
    if (uses_lstm()) {
      for (int64_t l = 0; l < c_.encoder_num_layers; ++l)
        for (const char* dir : {"", "_reverse"}) {
          const std::string s = std::to_string(l) + dir;
          declare("prompt_encoder.lstm_head.weight_ih_l" + s, {4 * h, l == 0 ? C : 2 * h});
          declare("prompt_encoder.lstm_head.weight_hh_l" + s, {4 * h, h});
          declare("prompt_encoder.lstm_head.bias_ih_l" + s, {4 * h});
          declare("prompt_encoder.lstm_head.bias_hh_l" + s, {4 * h});
        }
      declare("prompt_encoder.mlp_head.0.weight", {2 * h, 2 * h});
      declare("prompt_encoder.mlp_head.0.bias", {2 * h});
      declare("prompt_encoder.mlp_head.2.weight", {C, 2 * h});
      declare("prompt_encoder.mlp_head.2.bias", {C});
    } else {
      declare("prompt_encoder.mlp_head.0.weight", {h, C});
      declare("prompt_encoder.mlp_head.0.bias", {h});
      declare("prompt_encoder.mlp_head.2.weight", {h, h});
      declare("prompt_encoder.mlp_head.2.bias", {h});
      declare("prompt_encoder.mlp_head.4.weight", {C, h});
      declare("prompt_encoder.mlp_head.4.bias", {C});
    }
  }

  static bool config_is_ptuning(const PromptLearningConfig& c) { return c.peft_type == "P_TUNING"; }
  bool uses_lstm() const { return c_.encoder_reparameterization_type == "LSTM"; }

  void initialize(Rng& rng, const Tokenizer* tokenizer) override {
    const int64_t P = c_.num_virtual_tokens;
    if (encoder_) {
      fill_normal(param("prompt_encoder.embedding.weight")->value, rng, 0.0f, 1.0f);
      if (uses_lstm()) {
        const float bound = 1.0f / std::sqrt(float(c_.encoder_hidden_size));
        for (const auto& [key, shape] : declared_)
          if (key.find("lstm_head") != std::string::npos)
            fill_uniform(param(key)->value, rng, -bound, bound);
      }
      for (const char* layer : {"0", "2", "4"}) {
        const std::string p = std::string("prompt_encoder.mlp_head.") + layer;
        if (Var w = maybe(p + ".weight")) init_linear(w, param(p + ".bias"), rng);
      }
      return;
    }
    Tensor table = param("prompt_embeddings")->value;
    const std::string& init = c_.prompt_tuning_init;
    if (init == "RANDOM" || c_.peft_type == "P_TUNING") {
      fill_normal(table, rng, 0.0f, 1.0f);  // torch.nn.Embedding's init
      return;
    }
    std::vector<int32_t> ids;
    if (init == "TEXT") {
      if (!tokenizer)
        fail("prompt_tuning_init TEXT needs the model's tokenizer files (none in {})",
             c_.tokenizer_name_or_path);
      ids = tokenizer->encode(c_.prompt_tuning_init_text, true);
      if (ids.empty())
        fail("prompt_tuning_init_text \"{}\" has no tokens", c_.prompt_tuning_init_text);
      const std::vector<int32_t> once = ids;
      while (int64_t(ids.size()) < P) ids.insert(ids.end(), once.begin(), once.end());
      ids.resize(size_t(P));
    } else {  // SAMPLE_VOCAB: P ids uniform over the vocabulary
      for (int64_t i = 0; i < P; ++i) ids.push_back(int32_t(rng.below(uint64_t(vocab_))));
    }
    NoGradGuard no_grad;
    Tensor rows = embedding(embed_, Tensor::from_vector_i32(ids, {P}))->value;
    table.copy_from(rows.dtype() == DType::F32 ? rows : rows.to(DType::F32));
  }

  Var input_embeddings(const Var& x) override {
    const int64_t B = x->value.dim(0), P = c_.num_virtual_tokens;
    PEFT_CHECK(out_ != nullptr, "input_embeddings before begin_forward");
    std::vector<int32_t> ids(size_t(B * P));
    for (int64_t i = 0; i < B * P; ++i) ids[size_t(i)] = int32_t(i % P);
    Var virt = embedding(out_, Tensor::from_vector_i32(ids, {B, P}));  // [B, P, C]
    return concat({virt, x}, 1);
  }
  int64_t num_virtual_tokens() const override { return c_.num_virtual_tokens; }

 protected:
  Var encode(const ForwardContext& ctx) override {
    if (!encoder_) return param("prompt_embeddings");
    Var e = param("prompt_encoder.embedding.weight");
    auto lin = [&](const Var& x, const char* layer) {
      const std::string p = std::string("prompt_encoder.mlp_head.") + layer;
      return linear(x, param(p + ".weight"), param(p + ".bias"));
    };
    if (!uses_lstm()) return lin(relu(lin(relu(lin(e, "0")), "2")), "4");
    LstmParams lp;
    lp.num_layers = int(c_.encoder_num_layers);
    lp.bidirectional = true;
    for (int64_t l = 0; l < c_.encoder_num_layers; ++l)
      for (const char* dir : {"", "_reverse"}) {
        const std::string s = std::to_string(l) + dir, p = "prompt_encoder.lstm_head.";
        lp.weights.push_back({param(p + "weight_ih_l" + s), param(p + "weight_hh_l" + s),
                              param(p + "bias_ih_l" + s), param(p + "bias_hh_l" + s)});
      }
    lp.dropout = ctx.training ? c_.encoder_dropout : 0.0f;
    lp.rng = ctx.dropout_rng;
    const int64_t P = c_.num_virtual_tokens;
    Var y =
        reshape(peft::lstm(reshape(e, {1, P, c_.token_dim}), lp), {P, 2 * c_.encoder_hidden_size});
    return lin(relu(lin(y, "0")), "2");
  }

 private:
  int64_t vocab_;
  Var embed_;
};

// Prefix tuning and P-Tuning v2: keys and values in front of every attention layer.
class KvPrefixMethod final : public PromptLearningMethod {
 public:
  KvPrefixMethod(const PromptLearningConfig& config, const MethodContext& ctx)
      : PromptLearningMethod(config, ctx, config.prefix_projection) {
    const HFConfig& m = ctx.model.config();
    const int64_t P = c_.num_virtual_tokens, td = c_.token_dim, L = c_.num_layers;
    if (L != m.num_hidden_layers)
      fail("num_layers is {}, but the model has {} layers", L, m.num_hidden_layers);
    if (c_.num_attention_heads != m.num_key_value_heads || td != m.num_key_value_heads * m.head_dim)
      fail(
          "the prefix has {} heads of width {} (token_dim {}), but the model's attention takes {} "
          "key/value heads of width {}",
          c_.num_attention_heads, td / std::max<int64_t>(1, c_.num_attention_heads), td,
          m.num_key_value_heads, m.head_dim);
    heads_ = m.num_key_value_heads;
    head_dim_ = m.head_dim;
    if (!encoder_) {
      declare("prompt_embeddings", {P, L * 2 * td});
      return;
    }
    const int64_t h = c_.encoder_hidden_size;
    declare("prompt_encoder.embedding.weight", {P, td});
    declare("prompt_encoder.transform.0.weight", {h, td});
    declare("prompt_encoder.transform.0.bias", {h});
    declare("prompt_encoder.transform.2.weight", {L * 2 * td, h});
    declare("prompt_encoder.transform.2.bias", {L * 2 * td});
  }

  void initialize(Rng& rng, const Tokenizer* /*tokenizer*/) override {
    if (!encoder_) {
      fill_normal(param("prompt_embeddings")->value, rng, 0.0f, 1.0f);
      return;
    }
    fill_normal(param("prompt_encoder.embedding.weight")->value, rng, 0.0f, 1.0f);
    init_linear(param("prompt_encoder.transform.0.weight"),
                param("prompt_encoder.transform.0.bias"), rng);
    init_linear(param("prompt_encoder.transform.2.weight"),
                param("prompt_encoder.transform.2.bias"), rng);
  }

  void begin_forward(const ForwardContext& ctx) override {
    PromptLearningMethod::begin_forward(ctx);
    out_ = reshape(out_, {c_.num_virtual_tokens, 2 * c_.num_layers, c_.token_dim});
  }

  std::optional<KvPrefix> kv_prefix(int layer, int64_t /*batch*/) override {
    PEFT_CHECK(out_ != nullptr, "kv_prefix before begin_forward");
    const int64_t P = c_.num_virtual_tokens;
    auto slot = [&](int64_t s) {
      return reshape(slice(out_, 1, s, s + 1), {1, P, heads_, head_dim_});
    };
    return KvPrefix{slot(2 * layer), slot(2 * layer + 1)};
  }
  int64_t num_prefix_tokens() const override { return c_.num_virtual_tokens; }

 protected:
  Var encode(const ForwardContext& /*ctx*/) override {
    if (!encoder_) return param("prompt_embeddings");
    Var e = param("prompt_encoder.embedding.weight");
    Var h = tanh(linear(e, param("prompt_encoder.transform.0.weight"),
                        param("prompt_encoder.transform.0.bias")));
    return linear(h, param("prompt_encoder.transform.2.weight"),
                  param("prompt_encoder.transform.2.bias"));
  }

 private:
  int64_t heads_ = 0, head_dim_ = 0;
};

MethodFlag virtual_tokens_flag() {
  MethodFlag f{"num-virtual-tokens", "num_virtual_tokens", MethodFlag::Type::Int,
               "prompt-learning methods: virtual tokens P (default 20)"};
  f.min = 1;
  return f;
}
MethodFlag encoder_hidden_flag() {
  MethodFlag f{"encoder-hidden-size", "encoder_hidden_size", MethodFlag::Type::Int,
               "ptuning / prefix --prefix-projection: encoder hidden size (default: token_dim)"};
  f.min = 1;
  return f;
}

}  // namespace

namespace {

// The shared part of the four prompt-learning registry rows.
MethodInfo prompt_learning_info(const char* name, const char* peft_type, const char* summary) {
  MethodInfo info;
  info.name = name;
  info.peft_type = peft_type;
  info.summary = summary;
  info.help_group = "Prompt learning";
  return info;
}

PromptLearningConfig config_for(const nlohmann::json& config, const std::string& source,
                                const MethodContext& ctx) {
  return PromptLearningConfig::from_json(with_task_type(config, ctx.model), source,
                                         ctx.model.config());
}

}  // namespace

MethodInfo prompt_tuning_method_info() {
  using T = MethodFlag::Type;
  MethodInfo info = prompt_learning_info(
      "prompt", "PROMPT_TUNING",
      "soft prompt tuning: P trainable virtual-token embeddings before the text");
  info.flags = {virtual_tokens_flag(),
                {"prompt-init", "prompt_tuning_init", T::String,
                 "prompt: RANDOM (default), TEXT or SAMPLE_VOCAB"},
                {"prompt-init-text", "prompt_tuning_init_text", T::String,
                 "prompt: the text whose token embeddings (repeated or cut to P) start the prompt; "
                 "implies --prompt-init TEXT"}};
  info.flags[1].choices = {"RANDOM", "TEXT", "SAMPLE_VOCAB"};
  info.create = [](const nlohmann::json& config, const std::string& source,
                   const MethodContext& ctx) -> std::unique_ptr<Method> {
    nlohmann::json j = config;
    if (j.contains("prompt_tuning_init_text") && !j.contains("prompt_tuning_init") &&
        !j["prompt_tuning_init_text"].is_null())
      j["prompt_tuning_init"] = "TEXT";
    return std::make_unique<VirtualTokens>(config_for(j, source, ctx), ctx);
  };
  return info;
}

MethodInfo p_tuning_method_info() {
  using T = MethodFlag::Type;
  MethodInfo info = prompt_learning_info(
      "ptuning", "P_TUNING",
      "P-Tuning v1: virtual tokens from a trained MLP or bi-LSTM prompt encoder");
  info.flags = {
      virtual_tokens_flag(),
      encoder_hidden_flag(),
      {"encoder-reparameterization-type", "encoder_reparameterization_type", T::String,
       "ptuning: MLP (default) or LSTM"},
      {"encoder-num-layers", "encoder_num_layers", T::Int, "ptuning LSTM: layers (default 2)"},
      {"encoder-dropout", "encoder_dropout", T::Float,
       "ptuning LSTM: dropout between layers (default 0)"}};
  info.flags[2].choices = {"MLP", "LSTM"};
  info.flags[3].min = 1;
  info.flags[4].min = 0, info.flags[4].max = 1, info.flags[4].max_open = true;
  info.create = [](const nlohmann::json& config, const std::string& source,
                   const MethodContext& ctx) -> std::unique_ptr<Method> {
    return std::make_unique<VirtualTokens>(config_for(config, source, ctx), ctx);
  };
  return info;
}

MethodInfo prefix_method_info() {
  using T = MethodFlag::Type;
  MethodInfo info = prompt_learning_info(
      "prefix", "PREFIX_TUNING",
      "prefix tuning: trained keys and values in front of every attention layer");
  info.flags = {virtual_tokens_flag(),
                encoder_hidden_flag(),
                {"prefix-projection", "prefix_projection", T::Bool,
                 "prefix: reparameterise through Embedding-Linear-Tanh-Linear"}};
  info.create = [](const nlohmann::json& config, const std::string& source,
                   const MethodContext& ctx) -> std::unique_ptr<Method> {
    return std::make_unique<KvPrefixMethod>(config_for(config, source, ctx), ctx);
  };
  return info;
}

MethodInfo ptuning_v2_method_info() {
  MethodInfo info = prefix_method_info();
  info.name = "ptuning-v2";
  info.summary = "P-Tuning v2: deep prompts at every layer (PEFT's PREFIX_TUNING, no projection)";
  info.flags = {virtual_tokens_flag()};
  info.create = [](const nlohmann::json& config, const std::string& source,
                   const MethodContext& ctx) -> std::unique_ptr<Method> {
    PromptLearningConfig c = config_for(config, source, ctx);
    if (c.prefix_projection)
      fail("{}: P-Tuning v2 has no prefix projection (use --method prefix --prefix-projection)",
           source);
    return std::make_unique<KvPrefixMethod>(c, ctx);
  };
  return info;
}

}  // namespace peft
