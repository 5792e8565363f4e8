// Added tokens (HF "added_tokens"): strings matched in the raw text before the model runs, with
// HF's leftmost-longest rule and its per-token flags.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace peft::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool single_word = false;  // match only when not inside a word
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool normalized = false;   // matched against normalised text (after the normaliser)
};

// An added token from an HF JSON object; `id` overrides a missing "id" field. `what` names the
// source for errors.
AddedToken added_token_from_json(const nlohmann::json& j, int32_t id, const std::string& what);

// A stretch of the input: plain text (id < 0) or an added token match.
struct Piece {
  size_t begin, end;
  int32_t id;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }
  // Splits text into text pieces and token matches covering all of it, in order. Empty text
  // pieces are not emitted.
  void split(std::string_view text, std::vector<Piece>& out) const;

 private:
  struct Node {
    int32_t token = -1;  // index into tokens_ of the token ending here
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
  };
  int32_t child(int32_t node, unsigned char b) const;
  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
};

}  // namespace peft::tok
