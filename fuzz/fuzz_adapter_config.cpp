// libFuzzer: adapter_config.json as the LoRA and prompt-learning readers parse it (the same path
// the CLI's method flags take), against a small fixed model shape.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "peft/lora.h"
#include "peft/prompt_learning.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  static const peft::HFConfig model = [] {
    return peft::parse_hf_config({{"model_type", "qwen2"},
                                  {"vocab_size", 64},
                                  {"hidden_size", 32},
                                  {"intermediate_size", 64},
                                  {"num_hidden_layers", 2},
                                  {"num_attention_heads", 4},
                                  {"num_key_value_heads", 2},
                                  {"max_position_embeddings", 128}},
                                 "config.json");
  }();
  peft::fuzz::run_one(
      [&] { (void)peft::LoraConfig::from_json(j, "adapter_config.json").to_json(); });
  peft::fuzz::run_one([&] {
    (void)peft::PromptLearningConfig::from_json(j, "adapter_config.json", model).to_json();
  });
  return 0;
}
