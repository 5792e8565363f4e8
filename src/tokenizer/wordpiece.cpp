// WordPiece, following HF tokenizers' BertNormalizer / BertPreTokenizer / WordPiece model and
// decoder (which agree with transformers' slow BertTokenizer on valid text).
#include "tokenizer/wordpiece.h"

#include <nlohmann/json.hpp>

#include <unordered_map>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace peft::tok {

namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// BERT's CJK ideograph blocks, with HF tokenizers' bounds (its Extension E/F range starts at
// U+2B920, not U+2B820 as in the original BERT code).
bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// BERT's punctuation: all ASCII symbols (!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~) and categories P*.
bool is_bert_punct(char32_t c) {
  if (c < 0x80)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  return is_punctuation(c);
}

class WordPieceTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  int32_t token_to_id(std::string_view token) const override {
    if (auto it = added_by_content_.find(token); it != added_by_content_.end()) return it->second;
    return vocab_.find(token);
  }
  std::string id_to_token(int32_t id) const override {
    return id >= 0 && static_cast<size_t>(id) < tokens_.size() ? tokens_[id] : std::string();
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  bool is_special(int32_t id) const override {
    return id >= 0 && static_cast<size_t>(id) < special_flag_.size() && special_flag_[id];
  }
  std::string_view kind() const override { return "wordpiece"; }

  void set_vocab(const std::vector<std::pair<std::string, int32_t>>& vocab);
  void set_added_tokens(std::vector<AddedToken> added);

  bool clean_text = true, handle_chinese_chars = true, strip_accents = true, lowercase = true;
  std::string prefix = "##";
  size_t max_input_chars_per_word = 100;
  std::string decode_prefix = "##";
  bool cleanup = true;  // the decoder's clean-up of spaces before punctuation
  std::string unk_token = "[UNK]";
  SpecialAffixes affixes;

 private:
  std::string normalize(std::string_view s) const;
  void encode_segment(std::string_view seg, std::vector<int32_t>& out) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  FlatVocab vocab_;
  StringMap added_by_content_;
  std::vector<std::string> tokens_;
  std::vector<uint8_t> special_flag_;
  int32_t unk_id_ = -1;
  AddedTokenMatcher raw_matcher_, normalized_matcher_;
};

void WordPieceTokenizer::set_vocab(const std::vector<std::pair<std::string, int32_t>>& vocab) {
  int32_t max_id = -1;
  for (const auto& [tok, id] : vocab) {
    if (id < 0) fail("vocabulary token {:?} has a negative id {}", tok, id);
    max_id = std::max(max_id, id);
  }
  if (max_id > 50'000'000) fail("vocabulary id {} is implausibly large", max_id);
  tokens_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [tok, id] : vocab) {
    if (!utf8_valid(tok)) fail("vocabulary token {} is not valid UTF-8", id);
    vocab_.insert(tok, id);
    tokens_[id] = tok;
  }
  unk_id_ = vocab_.find(unk_token);
}

void WordPieceTokenizer::set_added_tokens(std::vector<AddedToken> added) {
  std::vector<AddedToken> raw, norm;
  for (AddedToken& t : added) {
    if (static_cast<size_t>(t.id) >= tokens_.size()) tokens_.resize(static_cast<size_t>(t.id) + 1);
    tokens_[t.id] = t.content;
    added_by_content_[t.content] = t.id;
    if (special_flag_.size() <= static_cast<size_t>(t.id)) special_flag_.resize(t.id + 1, 0);
    special_flag_[t.id] = t.special;
    if (t.normalized) {
      AddedToken n = t;
      n.content = normalize(t.content);
      if (!n.content.empty()) norm.push_back(std::move(n));
    } else {
      raw.push_back(t);
    }
  }
  special_flag_.resize(tokens_.size(), 0);
  raw_matcher_ = AddedTokenMatcher(std::move(raw));
  normalized_matcher_ = AddedTokenMatcher(std::move(norm));
}

// BertNormalizer: drop NUL, U+FFFD and control characters, whitespace -> ' ', spaces around CJK
// ideographs, then strip accents (NFD, drop Mn) and lower-case.
std::string WordPieceTokenizer::normalize(std::string_view s) const {
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    const char32_t c = utf8_next(s, i);
    if (clean_text) {
      if (c == 0 || c == 0xFFFD || (c != '\t' && c != '\n' && c != '\r' && is_control_like(c)))
        continue;
      if (is_white_space(c)) {
        out.push_back(' ');
        continue;
      }
    }
    if (handle_chinese_chars && is_cjk(c)) {
      out.push_back(' ');
      utf8_append(out, c);
      out.push_back(' ');
      continue;
    }
    utf8_append(out, c);
  }
  if (strip_accents && !is_ascii(out)) {
    const std::string nfd = unicode_normalize(out, NormalForm::kNFD);
    out.clear();
    for (size_t i = 0; i < nfd.size();) {
      const size_t b = i;
      const char32_t c = utf8_next(nfd, i);
      if (!is_nonspacing_mark(c)) out.append(nfd, b, i - b);
    }
  }
  if (lowercase) {
    std::string low;
    low.reserve(out.size());
    for (size_t i = 0; i < out.size();) append_lowercase(low, utf8_next(out, i));
    out = std::move(low);
  }
  return out;
}

std::vector<int32_t> WordPieceTokenizer::encode(std::string_view text,
                                                bool add_special_tokens) const {
  return encode_around_added_tokens(
      text, raw_matcher_, affixes, add_special_tokens,
      [this](std::string_view seg, std::vector<int32_t>& out) { encode_segment(seg, out); });
}

// BertPreTokenizer: split on whitespace (dropped) and around every punctuation character.
void WordPieceTokenizer::encode_segment(std::string_view seg, std::vector<int32_t>& out) const {
  const std::string norm = normalize(seg);
  std::vector<Piece> pieces;
  normalized_matcher_.split(norm, pieces);
  for (const Piece& p : pieces) {
    if (p.id >= 0) {
      out.push_back(p.id);
      continue;
    }
    const std::string_view s = std::string_view(norm).substr(p.begin, p.end - p.begin);
    size_t word = std::string_view::npos;  // start of the current word
    for (size_t i = 0; i < s.size();) {
      const size_t b = i;
      const char32_t c = utf8_next(s, i);
      const bool space = is_white_space(c), punct = !space && is_bert_punct(c);
      if (space || punct) {
        if (word != std::string_view::npos) encode_word(s.substr(word, b - word), out);
        word = std::string_view::npos;
        if (punct) encode_word(s.substr(b, i - b), out);
      } else if (word == std::string_view::npos) {
        word = b;
      }
    }
    if (word != std::string_view::npos) encode_word(s.substr(word), out);
  }
}

// Greedy longest-match-first; a word with a piece outside the vocabulary, or longer than
// max_input_chars_per_word characters, becomes one unknown token.
void WordPieceTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  size_t chars = 0;
  for (unsigned char c : word) chars += (c & 0xC0) != 0x80;
  if (chars > max_input_chars_per_word) {
    if (unk_id_ >= 0) out.push_back(unk_id_);
    return;
  }
  const size_t mark = out.size();
  std::string buf;
  for (size_t start = 0; start < word.size();) {
    size_t end = word.size();
    int32_t found = -1;
    while (start < end) {
      buf.clear();
      if (start > 0) buf += prefix;
      buf.append(word.substr(start, end - start));
      if (const int32_t id = vocab_.find(buf); id >= 0) {
        found = id;
        break;
      }
      do --end;  // back off one character
      while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
    }
    if (found < 0) {
      out.resize(mark);
      if (unk_id_ >= 0) out.push_back(unk_id_);
      return;
    }
    out.push_back(found);
    start = end;
  }
}

// HF's WordPiece decoder: "##" pieces glue to the previous token, others get a space; with
// cleanup, a space before . ? ! , and a few English contractions is removed.
std::string WordPieceTokenizer::decode(std::span<const int32_t> ids,
                                       bool skip_special_tokens) const {
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || tokens_[id].empty()) continue;
    if (skip_special_tokens && special_flag_[id]) continue;
    const std::string& tok = tokens_[id];
    std::string t;
    if (first)
      t = tok;
    else if (tok.rfind(decode_prefix, 0) == 0)
      t = tok.substr(decode_prefix.size());
    else
      t = " " + tok;
    first = false;
    if (cleanup) {
      static const std::pair<std::string_view, std::string_view> kRules[] = {
          {" .", "."},   {" ?", "?"},     {" !", "!"},    {" ,", ","},
          {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},  {" do not", " don't"},
          {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
      for (const auto& [from, to] : kRules) {
        if (t.find(from) == std::string::npos) continue;
        std::string r;
        for (size_t at = 0;;) {
          const size_t hit = t.find(from, at);
          r.append(t, at, hit == std::string::npos ? std::string::npos : hit - at);
          if (hit == std::string::npos) break;
          r.append(to);
          at = hit + from.size();
        }
        t = std::move(r);
      }
    }
    out += t;
  }
  return out;
}

std::vector<std::pair<std::string, int32_t>> read_vocab_txt(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<std::pair<std::string, int32_t>> vocab;
  int32_t id = 0;
  for (size_t pos = 0; pos < text.size(); ++id) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    vocab.emplace_back(std::string(line), id);
  }
  if (vocab.empty()) fail("{}: the vocabulary is empty", path);
  if (!utf8_valid(text)) fail("{}: not valid UTF-8", path);
  return vocab;
}

}  // namespace

std::unique_ptr<Tokenizer> wordpiece_from_tokenizer_json(const TokenizerJson& tj,
                                                         const std::string& path,
                                                         const TokenizerConfig& cfg) {
  (void)cfg;
  const nlohmann::json& j = tj.doc;
  auto t = std::make_unique<WordPieceTokenizer>();
  const auto& model = j.at("model");
  const auto& n = j.contains("normalizer") ? j["normalizer"] : nlohmann::json();
  if (!n.is_object() || n.value("type", "") != "BertNormalizer")
    throw Unsupported(fmt::format("{}: WordPiece is supported with the BertNormalizer only", path));
  t->clean_text = n.value("clean_text", true);
  t->handle_chinese_chars = n.value("handle_chinese_chars", true);
  t->lowercase = n.value("lowercase", true);
  t->strip_accents = n.contains("strip_accents") && n["strip_accents"].is_boolean()
                         ? n["strip_accents"].get<bool>()
                         : t->lowercase;
  const auto& p = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : nlohmann::json();
  if (!p.is_object() || p.value("type", "") != "BertPreTokenizer")
    throw Unsupported(
        fmt::format("{}: WordPiece is supported with the BertPreTokenizer only", path));
  const auto& d = j.contains("decoder") ? j["decoder"] : nlohmann::json();
  if (d.is_object() && d.value("type", "") == "WordPiece") {
    t->decode_prefix = d.value("prefix", std::string("##"));
    t->cleanup = d.value("cleanup", true);
  }
  t->unk_token = model.value("unk_token", std::string("[UNK]"));
  t->max_input_chars_per_word = model.value("max_input_chars_per_word", size_t{100});
  t->prefix = model.value("continuing_subword_prefix", std::string("##"));
  if (!tj.has_vocab) fail("{}: model.vocab is required", path);
  t->set_vocab(tj.vocab);
  std::vector<AddedToken> added;
  if (j.contains("added_tokens"))
    for (const auto& a : j["added_tokens"]) added.push_back(added_token_from_json(a, -1, path));
  t->set_added_tokens(std::move(added));
  WordPieceTokenizer* raw = t.get();
  t->affixes =
      parse_post_processor(j.contains("post_processor") ? j["post_processor"] : nlohmann::json(),
                           path, [raw](const std::string& s) { return raw->token_to_id(s); });
  return t;
}

std::unique_ptr<Tokenizer> wordpiece_from_vocab_txt(const std::string& dir,
                                                    const TokenizerConfig& cfg) {
  // transformers' BertTokenizer defaults: do_lower_case=True, strip_accents follows it,
  // tokenize_chinese_chars=True, [CLS] A [SEP].
  auto t = std::make_unique<WordPieceTokenizer>();
  t->lowercase = cfg.do_lower_case.value_or(true);
  t->strip_accents = cfg.strip_accents.value_or(t->lowercase);
  t->handle_chinese_chars = cfg.tokenize_chinese_chars.value_or(true);
  t->unk_token = cfg.unk_token.value_or("[UNK]");
  t->set_vocab(read_vocab_txt(dir + "/vocab.txt"));
  std::vector<AddedToken> added;
  for (const std::optional<std::string>& name :
       {cfg.pad_token.has_value() ? cfg.pad_token : std::optional<std::string>("[PAD]"),
        std::optional<std::string>(t->unk_token),
        cfg.cls_token.has_value() ? cfg.cls_token : std::optional<std::string>("[CLS]"),
        cfg.sep_token.has_value() ? cfg.sep_token : std::optional<std::string>("[SEP]"),
        cfg.mask_token.has_value() ? cfg.mask_token : std::optional<std::string>("[MASK]")}) {
    if (!name) continue;
    AddedToken a;
    a.content = *name;
    a.special = true;
    a.id = t->token_to_id(a.content);
    if (a.id >= 0) added.push_back(a);
  }
  for (const AddedToken& a : cfg.added_tokens) added.push_back(a);
  t->set_added_tokens(std::move(added));
  const int32_t cls = t->token_to_id(cfg.cls_token.value_or("[CLS]"));
  const int32_t sep = t->token_to_id(cfg.sep_token.value_or("[SEP]"));
  if (cls >= 0) t->affixes.prefix.push_back(cls);
  if (sep >= 0) t->affixes.suffix.push_back(sep);
  return t;
}

}  // namespace peft::tok
