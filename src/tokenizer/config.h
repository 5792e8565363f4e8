// tokenizer_config.json (and special_tokens_map.json): the parts the tokenizers use.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/added_vocab.h"

namespace peft::tok {

// A tokenizer.json component we do not implement; load_tokenizer then tries tokenizer.model.
class Unsupported : public Error {
 public:
  using Error::Error;
};

// The ids a post-processor puts around a single sequence (add_special_tokens=true).
struct SpecialAffixes {
  std::vector<int32_t> prefix, suffix;
};

// HF's encode of one text: invalid UTF-8 replaced by U+FFFD, the matches of the added tokens
// that are looked for in raw text emitted as their ids, every stretch between them given to
// encode_text, and with add_special_tokens the post-processor's ids around the whole.
std::vector<int32_t> encode_around_added_tokens(
    std::string_view text, const AddedTokenMatcher& raw_added, const SpecialAffixes& affixes,
    bool add_special_tokens,
    const std::function<void(std::string_view, std::vector<int32_t>&)>& encode_text);

// tokenizer.json "post_processor": TemplateProcessing, BertProcessing, RobertaProcessing,
// ByteLevel (adds nothing), Sequence, or null. lookup maps a token string to its id (-1: none).
SpecialAffixes parse_post_processor(const nlohmann::json& pp, const std::string& path,
                                    const std::function<int32_t(const std::string&)>& lookup);

struct TokenizerConfig {
  bool present = false;  // tokenizer_config.json exists
  std::string path;      // its path, for messages
  std::string tokenizer_class;
  std::optional<bool> add_bos_token, add_eos_token, add_prefix_space;
  std::optional<bool> do_lower_case, strip_accents, tokenize_chinese_chars;
  // Special token contents (a plain string or an {"content": ...} object in the file).
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token, cls_token, sep_token,
      mask_token;
  std::optional<std::string> chat_template;
  std::vector<AddedToken> added_tokens;  // from "added_tokens_decoder"
};

TokenizerConfig read_tokenizer_config(const std::string& dir);

// An HF tokenizer.json, with the (large) model.vocab and model.merges streamed into plain vectors
// instead of the JSON tree: a Qwen file has 151k of each.
struct TokenizerJson {
  nlohmann::json doc;  // everything else
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool has_vocab = false, has_merges = false;
};
TokenizerJson read_tokenizer_json(const std::string& path);

// A GPT-2 style vocab.json: one object token -> id.
std::vector<std::pair<std::string, int32_t>> read_vocab_json(const std::string& path);

// Reads and parses a JSON file; errors name the file.
nlohmann::json read_json_file(const std::string& path);
std::string read_text_file(const std::string& path);
bool file_exists(const std::string& path);

}  // namespace peft::tok
