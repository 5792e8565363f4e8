// Byte-level BPE (GPT-2, Qwen, Qwen2, Qwen2.5, Llama-3 style) from an HF tokenizer.json or from
// GPT-2 style vocab.json + merges.txt.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>

#include "tokenizer/config.h"
#include "tokenizer/tokenizer.h"

namespace peft::tok {

std::unique_ptr<Tokenizer> bpe_from_tokenizer_json(const TokenizerJson& j, const std::string& path,
                                                   const TokenizerConfig& cfg);
std::unique_ptr<Tokenizer> bpe_from_vocab_merges(const std::string& dir,
                                                 const TokenizerConfig& cfg);

// GPT-2's byte -> printable character table (bytes_to_unicode), as code points.
const char32_t* byte_level_alphabet();

}  // namespace peft::tok
