// Hugging Face config.json, with HF's field names and, for each supported model_type, HF's
// defaults for fields the file leaves out (transformers' Qwen2Config / LlamaConfig / BertConfig,
// Baichuan-7B's BaiChuanConfig). Fields a model type does not use keep their zero value.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace peft {

struct HFConfig {
  std::string model_type;                  // "qwen2", "llama", "baichuan", "bert"
  std::vector<std::string> architectures;  // e.g. ["Qwen2ForCausalLM"]
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // = num_attention_heads when absent
  int64_t head_dim = 0;             // = hidden_size / num_attention_heads when absent
  int64_t max_position_embeddings = 0;
  int64_t type_vocab_size = 0;  // bert
  double rms_norm_eps = 0;      // decoders
  double layer_norm_eps = 0;    // bert
  double rope_theta = 0;        // decoders
  double initializer_range = 0.02;
  std::string hidden_act;  // "silu" (decoders), "gelu" (bert)
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v (and o for llama) biases; qwen2: q/k/v always
  bool mlp_bias = false;        // llama's mlp_bias
  std::string torch_dtype;      // "float32", "bfloat16", ... ("" when absent)
  int64_t bos_token_id = -1, pad_token_id = -1;  // -1: absent / null
  std::vector<int64_t> eos_token_ids;            // eos_token_id may be a list

  nlohmann::json raw;  // the file as read (unknown fields are kept for writing back)
};

// Parses config.json contents; `source` names the file in errors. Unknown model types, missing
// required fields, wrong JSON types and inconsistent sizes (hidden_size not divisible by heads,
// heads not divisible by key/value heads, unsupported rope_scaling) are Errors.
HFConfig parse_hf_config(const nlohmann::json& j, const std::string& source);
// Reads DIR/config.json.
HFConfig load_hf_config(const std::string& dir);
// The config as transformers writes it: the raw fields, overwritten by ours.
nlohmann::json hf_config_to_json(const HFConfig& c);

}  // namespace peft
