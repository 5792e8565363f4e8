// WordPiece (BERT): BertNormalizer + BertPreTokenizer + greedy longest-match-first with "##",
// from an HF tokenizer.json or from vocab.txt (+ tokenizer_config.json's do_lower_case).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>

#include "tokenizer/config.h"
#include "tokenizer/tokenizer.h"

namespace peft::tok {

std::unique_ptr<Tokenizer> wordpiece_from_tokenizer_json(const TokenizerJson& j,
                                                         const std::string& path,
                                                         const TokenizerConfig& cfg);
std::unique_ptr<Tokenizer> wordpiece_from_vocab_txt(const std::string& dir,
                                                    const TokenizerConfig& cfg);

}  // namespace peft::tok
