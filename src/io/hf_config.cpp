#include "io/hf_config.h"

#include <cmath>

#include "core/error.h"
#include "io/files.h"

namespace peft {
namespace {

// HF's constructor defaults for one model_type.
struct Defaults {
  int64_t vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
  int64_t num_key_value_heads;  // 0: = num_attention_heads
  int64_t max_position_embeddings, type_vocab_size;
  double rms_norm_eps, layer_norm_eps, rope_theta;
  const char* hidden_act;
  bool tie_word_embeddings;
  int64_t bos, eos, pad;  // -1: None
};

// transformers 4.44 Qwen2Config (its num_key_value_heads default is 32, not "= heads"),
// LlamaConfig, Baichuan-7B's BaiChuanConfig, BertConfig (ties by PretrainedConfig's default).
const Defaults* defaults_for(const std::string& model_type) {
  static const Defaults qwen2{151936, 4096, 22016,   32,     32,    32, 32768, 0,
                              1e-6,   0,    10000.0, "silu", false, -1, -1,    -1};
  static const Defaults llama{32000, 4096, 11008,   32,     32,    0, 2048, 0,
                              1e-6,  0,    10000.0, "silu", false, 1, 2,    -1};
  static const Defaults baichuan{64000, 4096, 11008,   32,     32,    0, 4096, 0,
                                 1e-6,  0,    10000.0, "silu", false, 1, 2,    0};
  static const Defaults bert{30522, 768,   3072, 12,     12,   0,  512, 2,
                             0,     1e-12, 0,    "gelu", true, -1, -1,  0};
  if (model_type == "qwen2") return &qwen2;
  if (model_type == "llama") return &llama;
  if (model_type == "baichuan") return &baichuan;
  if (model_type == "bert") return &bert;
  return nullptr;
}

class Reader {
 public:
  static constexpr int64_t kMaxSize = (int64_t(1) << 31) - 1;
  Reader(const nlohmann::json& j, const std::string& source) : j_(j), source_(source) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  int64_t integer(const char* key, int64_t fallback) const {
    if (!has(key)) return fallback;
    const nlohmann::json& v = j_[key];
    if (!v.is_number_integer())
      fail("{}: \"{}\" is {}, expected an integer", source_, key, v.dump());
    return v.get<int64_t>();
  }
  int64_t positive(const char* key, int64_t fallback) const {
    const int64_t v = integer(key, fallback);
    if (v <= 0) fail("{}: \"{}\" is {}, expected a positive integer", source_, key, v);
    // Sizes index tensors with 32-bit counts in places, and a hostile file must not make the
    // loader plan a tensor list or product of sizes beyond any real model.
    if (v > kMaxSize)
      fail("{}: \"{}\" is {}, larger than any model this loader accepts (at most {})", source_, key,
           v, kMaxSize);
    return v;
  }
  // A finite number > 0 (or ≥ 0 with allow_zero): epsilons, rope_theta.
  double positive_number(const char* key, double fallback, bool allow_zero) const {
    const double v = number(key, fallback);
    if (!std::isfinite(v) || v < 0 || (v == 0 && !allow_zero))
      fail("{}: \"{}\" is {}, expected a number {} 0", source_, key, v, allow_zero ? "≥" : ">");
    return v;
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const nlohmann::json& v = j_[key];
    if (!v.is_number()) fail("{}: \"{}\" is {}, expected a number", source_, key, v.dump());
    return v.get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const nlohmann::json& v = j_[key];
    if (!v.is_boolean()) fail("{}: \"{}\" is {}, expected true or false", source_, key, v.dump());
    return v.get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const nlohmann::json& v = j_[key];
    if (!v.is_string()) fail("{}: \"{}\" is {}, expected a string", source_, key, v.dump());
    return v.get<std::string>();
  }
  std::vector<int64_t> integers(const char* key, int64_t fallback) const {
    if (!has(key)) return fallback >= 0 ? std::vector<int64_t>{fallback} : std::vector<int64_t>{};
    const nlohmann::json& v = j_[key];
    if (v.is_number_integer()) return {v.get<int64_t>()};
    std::vector<int64_t> out;
    if (v.is_array()) {
      for (const nlohmann::json& e : v) {
        if (!e.is_number_integer())
          fail("{}: \"{}\" is {}, expected integers", source_, key, v.dump());
        out.push_back(e.get<int64_t>());
      }
      return out;
    }
    fail("{}: \"{}\" is {}, expected an integer or a list of integers", source_, key, v.dump());
  }

 private:
  const nlohmann::json& j_;
  const std::string& source_;
};

}  // namespace

HFConfig parse_hf_config(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object", source);
  Reader r(j, source);
  HFConfig c;
  c.raw = j;
  c.model_type = r.string("model_type", "");
  if (c.model_type.empty())
    fail("{}: no \"model_type\" (expected qwen2, llama, baichuan or bert)", source);
  const Defaults* d = defaults_for(c.model_type);
  if (!d)
    fail("{}: model_type \"{}\" is not supported (expected qwen2, llama, baichuan or bert)", source,
         c.model_type);
  if (r.has("architectures")) {
    if (!j["architectures"].is_array()) fail("{}: \"architectures\" is not a list", source);
    for (const nlohmann::json& a : j["architectures"])
      if (a.is_string()) c.architectures.push_back(a.get<std::string>());
  }
  c.vocab_size = r.positive("vocab_size", d->vocab_size);
  c.hidden_size = r.positive("hidden_size", d->hidden_size);
  c.intermediate_size = r.positive("intermediate_size", d->intermediate_size);
  c.num_hidden_layers = r.positive("num_hidden_layers", d->num_hidden_layers);
  c.num_attention_heads = r.positive("num_attention_heads", d->num_attention_heads);
  c.num_key_value_heads =
      r.positive("num_key_value_heads",
                 d->num_key_value_heads ? d->num_key_value_heads : c.num_attention_heads);
  c.max_position_embeddings = r.positive("max_position_embeddings", d->max_position_embeddings);
  c.initializer_range = r.positive_number("initializer_range", 0.02, true);
  c.hidden_act = r.string("hidden_act", d->hidden_act);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", d->tie_word_embeddings);
  c.torch_dtype = r.string("torch_dtype", "");
  c.bos_token_id = r.integer("bos_token_id", d->bos);
  c.pad_token_id = r.integer("pad_token_id", d->pad);
  c.eos_token_ids = r.integers("eos_token_id", d->eos);

  const bool decoder = c.model_type != "bert";
  if (decoder) {
    c.rms_norm_eps = r.positive_number("rms_norm_eps", d->rms_norm_eps, true);
    // Baichuan-7B's rotary embedding hard-codes base 10000.
    c.rope_theta = c.model_type == "baichuan"
                       ? 10000.0
                       : r.positive_number("rope_theta", d->rope_theta, false);
    if (c.hidden_act != "silu" && c.hidden_act != "swish")
      fail("{}: hidden_act \"{}\" is not supported for {} (expected silu)", source, c.hidden_act,
           c.model_type);
    if (r.has("rope_scaling"))
      fail("{}: rope_scaling {} is not supported (expected null)", source,
           j["rope_scaling"].dump());
    if (c.model_type == "qwen2") c.attention_bias = true;  // Qwen2 always has q/k/v biases
    if (c.model_type == "llama") {
      c.attention_bias = r.boolean("attention_bias", false);
      c.mlp_bias = r.boolean("mlp_bias", false);
    }
    if (c.model_type == "baichuan" && c.hidden_size == 5120)
      fail("{}: Baichuan-13B (ALiBi attention, hidden_size 5120) is not supported; Baichuan-7B is",
           source);
  } else {
    c.layer_norm_eps = r.positive_number("layer_norm_eps", d->layer_norm_eps, true);
    c.type_vocab_size = r.positive("type_vocab_size", d->type_vocab_size);
    c.attention_bias = true;
    const std::string pos = r.string("position_embedding_type", "absolute");
    if (pos != "absolute")
      fail("{}: position_embedding_type \"{}\" is not supported (expected absolute)", source, pos);
    if (c.hidden_act != "gelu")
      fail("{}: hidden_act \"{}\" is not supported for bert (expected gelu)", source, c.hidden_act);
  }
  if (c.num_attention_heads > c.hidden_size)
    fail("{}: num_attention_heads {} exceeds hidden_size {}", source, c.num_attention_heads,
         c.hidden_size);
  c.head_dim = r.has("head_dim") && c.model_type == "llama" ? r.positive("head_dim", 0)
                                                            : c.hidden_size / c.num_attention_heads;
  if (!r.has("head_dim") || c.model_type != "llama") {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail("{}: hidden_size {} is not divisible by num_attention_heads {}", source, c.hidden_size,
           c.num_attention_heads);
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source,
         c.num_attention_heads, c.num_key_value_heads);
  if (decoder && c.head_dim % 2 != 0)
    fail("{}: head_dim {} is odd (rotary embeddings need an even head dimension)", source,
         c.head_dim);
  return c;
}

HFConfig load_hf_config(const std::string& dir) {
  const std::string path = join_path(dir, "config.json");
  if (!file_exists(path)) fail("{}: no config.json (expected a Hugging Face model folder)", dir);
  return parse_hf_config(read_json_file(path), path);
}

nlohmann::json hf_config_to_json(const HFConfig& c) {
  nlohmann::json j = c.raw.is_object() ? c.raw : nlohmann::json::object();
  j["model_type"] = c.model_type;
  if (!c.architectures.empty()) j["architectures"] = c.architectures;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["initializer_range"] = c.initializer_range;
  j["hidden_act"] = c.hidden_act;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.pad_token_id >= 0) j["pad_token_id"] = c.pad_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  if (c.model_type == "bert") {
    j["layer_norm_eps"] = c.layer_norm_eps;
    j["type_vocab_size"] = c.type_vocab_size;
  } else {
    j["num_key_value_heads"] = c.num_key_value_heads;
    j["rms_norm_eps"] = c.rms_norm_eps;
    if (c.model_type != "baichuan") j["rope_theta"] = c.rope_theta;
  }
  if (c.model_type == "llama") {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = c.mlp_bias;
  }
  return j;
}

}  // namespace peft
