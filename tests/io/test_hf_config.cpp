#include <gtest/gtest.h>

#include "core/error.h"
#include "io/hf_config.h"

namespace peft {
namespace {

using nlohmann::json;

std::string error_of(const json& j) {
  try {
    parse_hf_config(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HFConfig, MissingFieldsTakeHuggingFaceDefaultsPerModelType) {
  HFConfig q = parse_hf_config({{"model_type", "qwen2"}}, "cfg.json");
  EXPECT_EQ(q.vocab_size, 151936);
  EXPECT_EQ(q.num_key_value_heads, 32);  // Qwen2Config's default, not "= heads"
  EXPECT_EQ(q.max_position_embeddings, 32768);
  EXPECT_TRUE(q.attention_bias);
  EXPECT_FALSE(q.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(q.rms_norm_eps, 1e-6);

  HFConfig l = parse_hf_config({{"model_type", "llama"}, {"num_attention_heads", 8}}, "cfg.json");
  EXPECT_EQ(l.num_key_value_heads, 8);  // LlamaConfig: None -> num_attention_heads
  EXPECT_EQ(l.head_dim, 512);
  EXPECT_EQ(l.bos_token_id, 1);
  EXPECT_EQ(l.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_FALSE(l.attention_bias);

  HFConfig b = parse_hf_config({{"model_type", "bert"}}, "cfg.json");
  EXPECT_EQ(b.vocab_size, 30522);
  EXPECT_TRUE(b.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(b.layer_norm_eps, 1e-12);
  EXPECT_EQ(b.type_vocab_size, 2);

  HFConfig bc = parse_hf_config({{"model_type", "baichuan"}, {"rope_theta", 5}}, "cfg.json");
  EXPECT_EQ(bc.vocab_size, 64000);
  EXPECT_DOUBLE_EQ(bc.rope_theta, 10000.0);  // hard-coded in Baichuan-7B
}

TEST(HFConfig, BadConfigsNameTheFileAndField) {
  EXPECT_NE(error_of({{"hidden_size", 8}}).find("model_type"), std::string::npos);
  EXPECT_NE(error_of({{"model_type", "gpt2"}}).find("gpt2"), std::string::npos);
  EXPECT_NE(error_of({{"model_type", "llama"}, {"hidden_size", "big"}}).find("hidden_size"),
            std::string::npos);
  EXPECT_NE(error_of({{"model_type", "llama"}, {"hidden_size", 100}, {"num_attention_heads", 3}})
                .find("divisible"),
            std::string::npos);
  EXPECT_NE(error_of({{"model_type", "qwen2"},
                      {"num_attention_heads", 4},
                      {"hidden_size", 64},
                      {"num_key_value_heads", 3}})
                .find("num_key_value_heads"),
            std::string::npos);
  EXPECT_NE(error_of({{"model_type", "llama"}, {"rope_scaling", {{"type", "linear"}}}})
                .find("rope_scaling"),
            std::string::npos);
  EXPECT_NE(error_of({{"model_type", "llama"}, {"num_hidden_layers", -1}}).find("positive"),
            std::string::npos);
  EXPECT_NE(error_of(json::array()).find("cfg.json"), std::string::npos);
}

TEST(HFConfig, WritingKeepsUnknownFields) {
  HFConfig c = parse_hf_config(
      {{"model_type", "qwen2"}, {"use_sliding_window", false}, {"eos_token_id", {1, 2}}},
      "cfg.json");
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 2}));
  json j = hf_config_to_json(c);
  EXPECT_EQ(j["use_sliding_window"], false);
  EXPECT_EQ(j["num_key_value_heads"], 32);
  HFConfig again = parse_hf_config(j, "again");
  EXPECT_EQ(again.vocab_size, c.vocab_size);
  EXPECT_EQ(again.eos_token_ids, c.eos_token_ids);
}

}  // namespace
}  // namespace peft
