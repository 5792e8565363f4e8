#include "models/registry.h"

#include "core/error.h"
#include "models/families.h"
#include "models/model.h"

namespace peft {

const std::vector<ArchSpec>& architectures() {
  static const std::vector<ArchSpec> rows = {
      {"qwen2",
       "Qwen2ForCausalLM",
       true,
       {"q_proj", "v_proj"},
       {"tiny", "small", "qwen2-0.5b", "qwen2-7b"},
       decoder_tensors,
       decoder_linear_sites,
       decoder_canonical_name,
       build_decoder},
      {"llama",
       "LlamaForCausalLM",
       true,
       {"q_proj", "v_proj"},
       {"tiny", "small"},
       decoder_tensors,
       decoder_linear_sites,
       decoder_canonical_name,
       build_decoder},
      {"baichuan",
       "BaiChuanForCausalLM",
       true,
       {"W_pack"},
       {"tiny", "small", "baichuan-7b"},
       decoder_tensors,
       decoder_linear_sites,
       decoder_canonical_name,
       build_decoder},
      {"bert",
       "BertForMaskedLM",
       false,
       {"query", "value"},
       {"tiny", "small", "bert-base"},
       bert_tensors,
       bert_linear_sites,
       bert_canonical_name,
       build_bert},
  };
  return rows;
}

const ArchSpec& arch_for(const std::string& model_type, const std::string& source) {
  for (const ArchSpec& a : architectures())
    if (a.model_type == model_type) return a;
  fail("{}: model_type \"{}\" is not supported (expected qwen2, llama, baichuan or bert)", source,
       model_type);
}

nlohmann::json preset_config(const ArchSpec& arch, const std::string& preset) {
  bool known = false;
  for (const std::string& p : arch.presets) known |= p == preset;
  if (!known) {
    std::string list;
    for (const std::string& p : arch.presets) list += (list.empty() ? "" : ", ") + p;
    fail("preset \"{}\" is not available for {} (expected one of: {})", preset, arch.model_type,
         list);
  }
  const bool bert = arch.model_type == "bert";
  const bool baichuan = arch.model_type == "baichuan";
  nlohmann::json c = {{"model_type", arch.model_type},
                      {"architectures", {arch.architecture}},
                      {"initializer_range", 0.02}};
  if (preset == "tiny") {
    c.update({{"hidden_size", 64},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"intermediate_size", 128},
              {"vocab_size", 512},
              {"max_position_embeddings", 512}});
    if (!bert) c["num_key_value_heads"] = baichuan ? 4 : 2;  // W_pack has no GQA
  } else if (preset == "small") {
    c.update({{"hidden_size", 256},
              {"num_hidden_layers", 4},
              {"num_attention_heads", 8},
              {"intermediate_size", 704},
              {"vocab_size", 4096},
              {"max_position_embeddings", 2048}});
    if (!bert) c["num_key_value_heads"] = baichuan ? 8 : 2;
  } else if (preset == "qwen2-0.5b") {  // Qwen/Qwen2-0.5B
    c.update({{"hidden_size", 896},
              {"num_hidden_layers", 24},
              {"num_attention_heads", 14},
              {"num_key_value_heads", 2},
              {"intermediate_size", 4864},
              {"vocab_size", 151936},
              {"max_position_embeddings", 32768},
              {"rope_theta", 1000000.0},
              {"tie_word_embeddings", true},
              {"bos_token_id", 151643},
              {"eos_token_id", 151643},
              {"use_sliding_window", false},
              {"sliding_window", 32768},
              {"max_window_layers", 24}});
  } else if (preset == "qwen2-7b") {  // Qwen/Qwen2-7B shapes (vocab as CLI.md states)
    c.update({{"hidden_size", 3584},
              {"num_hidden_layers", 28},
              {"num_attention_heads", 28},
              {"num_key_value_heads", 4},
              {"intermediate_size", 18944},
              {"vocab_size", 151936},
              {"max_position_embeddings", 32768},
              {"rope_theta", 1000000.0},
              {"tie_word_embeddings", false},
              {"bos_token_id", 151643},
              {"eos_token_id", 151643},
              {"use_sliding_window", false},
              {"sliding_window", 131072},
              {"max_window_layers", 28}});
  } else if (preset == "baichuan-7b") {  // baichuan-inc/Baichuan-7B
    c.update({{"hidden_size", 4096},
              {"num_hidden_layers", 32},
              {"num_attention_heads", 32},
              {"intermediate_size", 11008},
              {"vocab_size", 64000},
              {"max_position_embeddings", 4096},
              {"rms_norm_eps", 1e-6},
              {"bos_token_id", 1},
              {"eos_token_id", 2},
              {"pad_token_id", 0},
              {"tie_word_embeddings", false}});
  } else if (preset == "bert-base") {  // bert-base-uncased
    c.update({{"hidden_size", 768},
              {"num_hidden_layers", 12},
              {"num_attention_heads", 12},
              {"intermediate_size", 3072},
              {"vocab_size", 30522},
              {"max_position_embeddings", 512},
              {"type_vocab_size", 2},
              {"layer_norm_eps", 1e-12},
              {"pad_token_id", 0}});
  }
  if (preset == "tiny" || preset == "small") {
    if (bert) {
      c.update({{"type_vocab_size", 2},
                {"layer_norm_eps", 1e-12},
                {"pad_token_id", 0},
                {"tie_word_embeddings", true}});
    } else {
      c.update({{"rms_norm_eps", 1e-6},
                {"tie_word_embeddings", false},
                {"bos_token_id", 1},
                {"eos_token_id", 2}});
      if (!baichuan) c["rope_theta"] = 10000.0;
    }
  }
  if (bert)
    c.update({{"hidden_act", "gelu"},
              {"position_embedding_type", "absolute"},
              {"hidden_dropout_prob", 0.1},
              {"attention_probs_dropout_prob", 0.1}});
  else
    c["hidden_act"] = "silu";
  return c;
}

}  // namespace peft
