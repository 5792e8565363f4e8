#include "tokenizer/added_vocab.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace peft::tok {

AddedToken added_token_from_json(const nlohmann::json& j, int32_t id, const std::string& what) {
  if (!j.is_object() || !j.contains("content") || !j["content"].is_string())
    fail("{}: an added token must be an object with a string \"content\", found {}", what,
         j.dump().substr(0, 80));
  AddedToken t;
  if (j.contains("id") && !j["id"].is_number_integer())
    fail("{}: added token id must be an integer, found {}", what, j["id"].dump());
  const int64_t raw_id = j.contains("id") ? j["id"].get<int64_t>() : id;
  t.id = raw_id < 0 || raw_id > INT32_MAX ? -1 : static_cast<int32_t>(raw_id);
  t.content = j["content"].get<std::string>();
  auto flag = [&](const char* key, bool dflt) {
    return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : dflt;
  };
  t.special = flag("special", false);
  t.single_word = flag("single_word", false);
  t.lstrip = flag("lstrip", false);
  t.rstrip = flag("rstrip", false);
  // HF's default: special tokens are matched on the raw text, others after normalisation.
  t.normalized = flag("normalized", !t.special);
  if (t.id < 0 || t.id > 50'000'000)
    fail("{}: added token {:?} has id {}, expected 0..50000000", what, t.content, t.id);
  if (t.content.empty()) fail("{}: added token {} has empty content", what, t.id);
  if (!utf8_valid(t.content)) fail("{}: added token {} is not valid UTF-8", what, t.id);
  return t;
}

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  nodes_.emplace_back();
  for (size_t t = 0; t < tokens_.size(); ++t) {
    int32_t node = 0;
    for (unsigned char b : tokens_[t].content) {
      int32_t c = child(node, b);
      if (c < 0) {
        c = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        auto& next = nodes_[node].next;
        next.insert(std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t{0})),
                    {b, c});
      }
      node = c;
    }
    nodes_[node].token = static_cast<int32_t>(t);  // a duplicate content: the last one wins
    first_byte_[static_cast<unsigned char>(tokens_[t].content[0])] = true;
  }
}

int32_t AddedTokenMatcher::child(int32_t node, unsigned char b) const {
  const auto& next = nodes_[node].next;
  auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t{0}));
  return it != next.end() && it->first == b ? it->second : -1;
}

namespace {

bool is_word_char(char32_t c) {
  return c == '_' || is_alphanumeric(c);
}

// The code point that ends just before byte offset `at` (valid UTF-8, at > 0).
char32_t char_before(std::string_view s, size_t at, size_t* begin) {
  size_t b = at - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  size_t i = b;
  *begin = b;
  return utf8_next(s, i);
}

}  // namespace

void AddedTokenMatcher::split(std::string_view text, std::vector<Piece>& out) const {
  const size_t n = text.size();
  size_t emitted = 0;  // end of what has been emitted so far
  size_t pos = 0;
  while (pos < n) {
    while (pos < n && !first_byte_[static_cast<unsigned char>(text[pos])]) ++pos;
    if (pos >= n) break;
    // Longest token starting at pos.
    int32_t best = -1;
    size_t best_end = 0;
    int32_t node = 0;
    for (size_t q = pos; q < n; ++q) {
      node = child(node, static_cast<unsigned char>(text[q]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) best = nodes_[node].token, best_end = q + 1;
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = tokens_[best];
    size_t start = pos, stop = best_end;
    pos = best_end;  // like HF's non-overlapping search, go on after this match in any case
    if (tok.single_word) {
      size_t unused;
      const bool left_ok = start == 0 || !is_word_char(char_before(text, start, &unused));
      size_t i = stop;
      const bool right_ok = stop == n || !is_word_char(utf8_next(text, i));
      if (!left_ok || !right_ok) continue;
    }
    if (start < emitted) continue;  // overlaps a previous match widened by rstrip
    if (tok.lstrip) {
      while (start > emitted) {
        size_t b;
        if (!is_white_space(char_before(text, start, &b))) break;
        start = std::max(b, emitted);
      }
    }
    if (tok.rstrip) {
      while (stop < n) {
        size_t i = stop;
        if (!is_white_space(utf8_next(text, i))) break;
        stop = i;
      }
      pos = stop;
    }
    if (emitted < start) out.push_back({emitted, start, -1});
    out.push_back({start, stop, tok.id});
    emitted = stop;
  }
  if (emitted < n) out.push_back({emitted, n, -1});
}

}  // namespace peft::tok
