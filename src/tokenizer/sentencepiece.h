// SentencePiece tokenizer.model (Llama, Llama-2, Baichuan) through libsentencepiece.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/config.h"
#include "tokenizer/tokenizer.h"

namespace peft::tok {

// BOS / EOS on add_special_tokens per add_bos_token (default true, as LlamaTokenizer and
// BaichuanTokenizer) and add_eos_token (default false).
std::unique_ptr<Tokenizer> sentencepiece_from_model(const std::string& dir,
                                                    const TokenizerConfig& cfg);

}  // namespace peft::tok
