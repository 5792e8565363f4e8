// The token ids that end generation for a model folder, chosen as transformers' generate() chooses
// them: generation_config.json's eos_token_id (one id or a list) when the folder has that file and
// the field, else config.json's. A model whose stories end with another token than its tokenizer's
// EOS says so there: llama2.c's stories260K ends a story with BOS, so its generation_config.json
// lists [1, 2].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace peft {

// `config_eos` is config.json's eos_token_id list (HFConfig::eos_token_ids). A malformed
// generation_config.json (not JSON, not an object, an eos_token_id that is not a non-negative
// whole number or a list of them, or an id ≥ vocab_size when vocab_size > 0) is an Error naming
// the file.
std::vector<int64_t> generation_eos_ids(const std::string& model_dir,
                                        const std::vector<int64_t>& config_eos,
                                        int64_t vocab_size = 0);

}  // namespace peft
