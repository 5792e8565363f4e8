// The continuous-prompt family of Hugging Face PEFT (FORMATS.md, "Prompt-learning fields"):
//   prompt      soft prompt tuning (Lester et al. 2021): P trainable embeddings [P, C] before the
//               text; init RANDOM N(0, 1), TEXT (the embeddings of the tokenised init text, with
//               special tokens, repeated or cut to P) or SAMPLE_VOCAB (of P random vocab ids).
//   ptuning     P-Tuning v1 (Liu et al. 2021): the P virtual tokens come from a prompt encoder
//               over an embedding e [P, C]: MLP  W3·relu(W2·relu(W1·e + b1) + b2) + b3 (hidden h)
//               or LSTM  mlp(bi-LSTM₂(e)) with mlp = Linear(2h, 2h)–ReLU–Linear(2h, C).
//               Virtual tokens take positions 0 … P−1, the text P … P+T−1; logits [B, P+T, V].
//   prefix      prefix tuning (Li & Liang 2021): per-layer keys and values from
//               kv [P, L·2·nkv·hd] = table (or, with prefix_projection, Linear–Tanh–Linear over an
//               embedding [P, C]), viewed as (P, 2L, nkv, hd): layer l's keys are slot 2l and its
//               values slot 2l+1, not rotated; the text takes positions P … P+T−1.
//   ptuning-v2  P-Tuning v2 (Liu et al. 2022): deep prompts at every layer = PEFT's PREFIX_TUNING
//               without projection.
// Files: PEFT's folder holds ONE tensor, prompt_embeddings, the encoder's output ([P, C] or
// [P, L·2·nkv·hd]). Where an encoder is trained (P-Tuning, prefix projection), its weights also go
// to prompt_encoder.safetensors beside it (PEFT ignores the file) so training resumes; a folder
// without that file (PEFT's) continues training the stored prompt_embeddings themselves.
#pragma once

#include "peft/method.h"

namespace peft {

struct PromptLearningConfig {
  std::string peft_type;  // PROMPT_TUNING | P_TUNING | PREFIX_TUNING
  std::string task_type = "CAUSAL_LM";
  std::string base_model_name_or_path;
  int64_t num_virtual_tokens = 0;
  int64_t token_dim = 0;
  int64_t num_transformer_submodules = 1;
  int64_t num_attention_heads = 0;
  int64_t num_layers = 0;
  // prompt tuning
  std::string prompt_tuning_init = "RANDOM";  // RANDOM | TEXT | SAMPLE_VOCAB
  std::string prompt_tuning_init_text;
  std::string tokenizer_name_or_path;
  // P-tuning
  std::string encoder_reparameterization_type = "MLP";  // MLP | LSTM
  int64_t encoder_hidden_size = 0;
  int64_t encoder_num_layers = 2;
  float encoder_dropout = 0.0f;
  // prefix tuning
  bool prefix_projection = false;

  // PEFT's fields; missing model-shaped ones (num_layers, token_dim, num_attention_heads,
  // encoder_hidden_size) are filled from the model as PEFT's _prepare_prompt_learning_config does
  // (prefix tuning on GQA models: token_dim = nkv·hd, num_attention_heads = nkv).
  static PromptLearningConfig from_json(const nlohmann::json& j, const std::string& source,
                                        const HFConfig& model);
  nlohmann::json to_json() const;
};

MethodInfo prompt_tuning_method_info();
MethodInfo p_tuning_method_info();
MethodInfo prefix_method_info();
MethodInfo ptuning_v2_method_info();

}  // namespace peft
