// PromptLearningConfig <-> adapter_config.json (PEFT 0.12's prompt tuning, P-Tuning and prefix
// tuning configs), apart from the methods so that the fuzz build (fuzz/) parses configs without
// linking models and ops.
#include <cctype>
#include <string>

#include "peft/config_json.h"
#include "peft/prompt_learning.h"

namespace peft {
namespace {

using config_json::get_or;

std::string upper(std::string s) {
  for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

PromptLearningConfig PromptLearningConfig::from_json(const nlohmann::json& j,
                                                     const std::string& source,
                                                     const HFConfig& model) {
  try {
    PromptLearningConfig c;
    c.peft_type = get_or<std::string>(j, source, "peft_type", "");
    if (c.peft_type != "PROMPT_TUNING" && c.peft_type != "P_TUNING" &&
        c.peft_type != "PREFIX_TUNING")
      fail("{}: peft_type is \"{}\", expected PROMPT_TUNING, P_TUNING or PREFIX_TUNING", source,
           c.peft_type);
    c.task_type = get_or<std::string>(j, source, "task_type", "CAUSAL_LM");
    c.base_model_name_or_path = get_or<std::string>(j, source, "base_model_name_or_path", "");
    c.num_virtual_tokens = get_or<int64_t>(j, source, "num_virtual_tokens", 20);
    if (c.num_virtual_tokens <= 0)
      fail("{}: num_virtual_tokens is {}, expected a positive count", source, c.num_virtual_tokens);
    c.num_transformer_submodules = get_or<int64_t>(j, source, "num_transformer_submodules", 1);
    if (c.num_transformer_submodules != 1)
      fail("{}: num_transformer_submodules is {}; only 1 (decoders, encoders) is supported", source,
           c.num_transformer_submodules);
    c.num_layers = get_or<int64_t>(j, source, "num_layers", model.num_hidden_layers);
    c.token_dim = get_or<int64_t>(j, source, "token_dim", 0);
    c.num_attention_heads = get_or<int64_t>(j, source, "num_attention_heads", 0);
    if (c.token_dim == 0 || c.num_attention_heads == 0) {
      int64_t dim = c.token_dim ? c.token_dim : model.hidden_size;
      int64_t heads = c.num_attention_heads ? c.num_attention_heads : model.num_attention_heads;
      if (c.peft_type == "PREFIX_TUNING" && model.raw.contains("num_key_value_heads")) {
        dim = dim / heads * model.num_key_value_heads;
        heads = model.num_key_value_heads;
      }
      c.token_dim = dim;
      c.num_attention_heads = heads;
    }
    c.prompt_tuning_init = upper(get_or<std::string>(j, source, "prompt_tuning_init", "RANDOM"));
    if (c.prompt_tuning_init != "RANDOM" && c.prompt_tuning_init != "TEXT" &&
        c.prompt_tuning_init != "SAMPLE_VOCAB")
      fail("{}: prompt_tuning_init is \"{}\", expected RANDOM, TEXT or SAMPLE_VOCAB", source,
           c.prompt_tuning_init);
    c.prompt_tuning_init_text = get_or<std::string>(j, source, "prompt_tuning_init_text", "");
    c.tokenizer_name_or_path =
        get_or<std::string>(j, source, "tokenizer_name_or_path", c.base_model_name_or_path);
    if (c.peft_type == "PROMPT_TUNING" && c.prompt_tuning_init == "TEXT" &&
        c.prompt_tuning_init_text.empty())
      fail("{}: prompt_tuning_init TEXT needs prompt_tuning_init_text (--prompt-init-text)",
           source);
    c.encoder_reparameterization_type =
        upper(get_or<std::string>(j, source, "encoder_reparameterization_type", "MLP"));
    if (c.encoder_reparameterization_type != "MLP" && c.encoder_reparameterization_type != "LSTM")
      fail("{}: encoder_reparameterization_type is \"{}\", expected MLP or LSTM", source,
           c.encoder_reparameterization_type);
    c.encoder_hidden_size = get_or<int64_t>(j, source, "encoder_hidden_size", c.token_dim);
    if (c.encoder_hidden_size <= 0) c.encoder_hidden_size = c.token_dim;
    c.encoder_num_layers = get_or<int64_t>(j, source, "encoder_num_layers", 2);
    if (c.encoder_reparameterization_type == "MLP") c.encoder_num_layers = 2;  // as PEFT: ignored
    if (c.encoder_num_layers <= 0)
      fail("{}: encoder_num_layers is {}, expected a positive count", source, c.encoder_num_layers);
    c.encoder_dropout = get_or<float>(j, source, "encoder_dropout", 0.0f);
    if (c.encoder_dropout < 0.0f || c.encoder_dropout >= 1.0f)
      fail("{}: encoder_dropout is {}, expected 0 <= p < 1", source, c.encoder_dropout);
    c.prefix_projection = get_or<bool>(j, source, "prefix_projection", false);
    return c;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed prompt-learning config: {}", source, e.what());
  }
}

nlohmann::json PromptLearningConfig::to_json() const {
  // Exactly the fields of PEFT 0.12's config class of this peft_type (older PEFT rejects others).
  nlohmann::json j;
  j["peft_type"] = peft_type;
  j["task_type"] = task_type;
  j["base_model_name_or_path"] = base_model_name_or_path;
  j["revision"] = nullptr;
  j["inference_mode"] = true;
  j["num_virtual_tokens"] = num_virtual_tokens;
  j["token_dim"] = token_dim;
  j["num_transformer_submodules"] = num_transformer_submodules;
  j["num_attention_heads"] = num_attention_heads;
  j["num_layers"] = num_layers;
  if (peft_type == "PROMPT_TUNING") {
    j["prompt_tuning_init"] = prompt_tuning_init;
    j["prompt_tuning_init_text"] =
        prompt_tuning_init == "TEXT" ? nlohmann::json(prompt_tuning_init_text) : nullptr;
    j["tokenizer_name_or_path"] =
        prompt_tuning_init == "TEXT" ? nlohmann::json(tokenizer_name_or_path) : nullptr;
    j["tokenizer_kwargs"] = nullptr;
  } else if (peft_type == "P_TUNING") {
    j["encoder_reparameterization_type"] = encoder_reparameterization_type;
    j["encoder_hidden_size"] = encoder_hidden_size;
    j["encoder_num_layers"] = encoder_num_layers;
    j["encoder_dropout"] = encoder_dropout;
  } else {
    j["encoder_hidden_size"] = encoder_hidden_size;
    j["prefix_projection"] = prefix_projection;
  }
  return j;
}

}  // namespace peft
