// Chat format detection (the rendering itself is Tokenizer::render_chat).
#pragma once

#include <optional>
#include <string>

#include "tokenizer/config.h"
#include "tokenizer/tokenizer.h"

namespace peft::tok {

// The default system prompt a ChatML chat_template writes when no system message is given: the
// literal text of its "<|im_start|>system\n...<|im_end|>" string, if any.
std::optional<std::string> chatml_default_system(const std::string& chat_template);

// Fills c from the tokenizer's tokens and its config: ChatML when <|im_start|> and <|im_end|>
// exist; Baichuan for a SentencePiece model whose ids 195 / 196 are <reserved_102> /
// <reserved_103>.
void detect_chat_format(const Tokenizer& t, const TokenizerConfig& cfg, ChatSettings& c);

}  // namespace peft::tok
