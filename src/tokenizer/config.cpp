#include "tokenizer/config.h"

#include <climits>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace peft::tok {

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the file", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", path);
  return std::move(ss).str();
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("{}: not valid JSON", path);
  return j;
}

namespace {

// A small JSON reader for the two big members of a tokenizer.json (model.vocab: 151k entries,
// model.merges: 151k pairs in Qwen's): a plain pointer loop, several times faster than a general
// JSON library (and tens of times faster in a Debug / ASan build). The rest of the file is small
// and goes to nlohmann::json.
class JsonScanner {
 public:
  JsonScanner(std::string_view text, const std::string& path)
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()), path_(path) {}

  const char* pos() const { return p_; }
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool peek(char c) {
    ws();
    return p_ < end_ && *p_ == c;
  }
  void expect(char c) {
    if (!peek(c)) error(fmt::format("expected '{}'", c));
    ++p_;
  }
  // After an element of an object or array: true if another one follows, false at `close`.
  bool next(char close) {
    ws();
    if (p_ < end_ && *p_ == ',') {
      ++p_;
      return true;
    }
    expect(close);
    return false;
  }
  void string(std::string& out) {
    expect('"');
    out.clear();
    for (;;) {
      const char* q = p_;
      while (q < end_ && *q != '"' && *q != '\\') ++q;
      out.append(p_, static_cast<size_t>(q - p_));
      p_ = q;
      if (p_ >= end_) error("unterminated string");
      if (*p_++ == '"') return;
      if (p_ >= end_) error("unterminated string");
      switch (const char e = *p_++) {
        case '"':
        case '\\':
        case '/':
          out.push_back(e);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          char32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
            if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') error("unpaired surrogate");
            p_ += 2;
            const char32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            error("unpaired surrogate");
          }
          utf8_append(out, cp);
          break;
        }
        default:
          error("bad escape");
      }
    }
  }
  int64_t integer() {
    ws();
    const char* q = p_;
    if (q < end_ && *q == '-') ++q;
    int64_t v = 0;
    const char* digits = q;
    while (q < end_ && *q >= '0' && *q <= '9' && q - digits < 18) v = v * 10 + (*q++ - '0');
    if (q == digits ||
        (q < end_ && (*q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9'))))
      error("expected an integer");
    const bool neg = *p_ == '-';
    p_ = q;
    return neg ? -v : v;
  }
  // Skips any value.
  void skip_value() {
    ws();
    if (p_ >= end_) error("unexpected end");
    if (*p_ == '"') {
      skip_string();
      return;
    }
    if (*p_ == '{' || *p_ == '[') {
      int depth = 0;
      do {
        if (*p_ == '"') {
          skip_string();
          continue;
        }
        if (*p_ == '{' || *p_ == '[')
          ++depth;
        else if (*p_ == '}' || *p_ == ']')
          --depth;
        ++p_;
      } while (depth > 0 && p_ < end_);
      if (depth > 0) error("unterminated object or array");
      return;
    }
    while (p_ < end_ && *p_ != ',' && *p_ != '}' && *p_ != ']' && *p_ != ' ' && *p_ != '\n' &&
           *p_ != '\r' && *p_ != '\t')
      ++p_;
  }
  [[noreturn]] void error(const std::string& what) const {
    fail("{}: not valid JSON: {} at byte {}", path_, what, p_ - begin_);
  }

 private:
  void skip_string() {
    ++p_;
    while (p_ < end_ && *p_ != '"') p_ += *p_ == '\\' ? 2 : 1;
    if (p_ >= end_) error("unterminated string");
    ++p_;
  }
  char32_t hex4() {
    if (end_ - p_ < 4) error("bad \\u escape");
    char32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<char32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<char32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<char32_t>(c - 'A' + 10);
      else
        error("bad \\u escape");
    }
    return v;
  }
  const char* begin_;
  const char* p_;
  const char* end_;
  const std::string& path_;
};

// {"token": id, ...}
void scan_vocab(JsonScanner& s, std::vector<std::pair<std::string, int32_t>>& out) {
  s.expect('{');
  if (s.peek('}')) {
    s.expect('}');
    return;
  }
  std::string key;
  do {
    s.string(key);
    s.expect(':');
    const int64_t id = s.integer();
    if (id < 0 || id > INT32_MAX)
      s.error(fmt::format("token id {} of {:?} is out of range", id, key));
    out.emplace_back(key, static_cast<int32_t>(id));
  } while (s.next('}'));
}

// ["a b", ...] or [["a", "b"], ...]
void scan_merges(JsonScanner& s, std::vector<std::pair<std::string, std::string>>& out) {
  s.expect('[');
  if (s.peek(']')) {
    s.expect(']');
    return;
  }
  std::string a, b;
  do {
    if (s.peek('[')) {
      s.expect('[');
      s.string(a);
      s.expect(',');
      s.string(b);
      s.expect(']');
      out.emplace_back(a, b);
    } else {
      s.string(a);
      const size_t sp = a.find(' ');
      if (sp == std::string::npos || a.find(' ', sp + 1) != std::string::npos)
        s.error(
            fmt::format("merge {} {:?} is not two tokens separated by one space", out.size(), a));
      out.emplace_back(a.substr(0, sp), a.substr(sp + 1));
    }
  } while (s.next(']'));
}

std::optional<std::string> token_content(const nlohmann::json& j, const char* key,
                                         const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const auto& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  fail("{}: \"{}\" must be a string or an object with \"content\", found {}", path, key,
       v.dump().substr(0, 80));
}

std::optional<bool> optional_bool(const nlohmann::json& j, const char* key,
                                  const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_boolean())
    fail("{}: \"{}\" must be true or false, found {}", path, key, j[key].dump());
  return j[key].get<bool>();
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& dir) {
  TokenizerConfig cfg;
  cfg.path = dir + "/tokenizer_config.json";
  nlohmann::json j = nlohmann::json::object();
  if (file_exists(cfg.path)) {
    j = read_json_file(cfg.path);
    if (!j.is_object()) fail("{}: expected a JSON object", cfg.path);
    cfg.present = true;
  }
  // Older folders keep the special tokens in special_tokens_map.json; tokenizer_config wins.
  const std::string map_path = dir + "/special_tokens_map.json";
  if (file_exists(map_path)) {
    const nlohmann::json m = read_json_file(map_path);
    if (m.is_object())
      for (const char* key : {"bos_token", "eos_token", "pad_token", "unk_token", "cls_token",
                              "sep_token", "mask_token"})
        if (!j.contains(key) && m.contains(key)) j[key] = m[key];
  }
  const std::string& p = cfg.path;
  if (j.contains("tokenizer_class") && j["tokenizer_class"].is_string())
    cfg.tokenizer_class = j["tokenizer_class"].get<std::string>();
  cfg.add_bos_token = optional_bool(j, "add_bos_token", p);
  cfg.add_eos_token = optional_bool(j, "add_eos_token", p);
  cfg.add_prefix_space = optional_bool(j, "add_prefix_space", p);
  cfg.do_lower_case = optional_bool(j, "do_lower_case", p);
  cfg.strip_accents = optional_bool(j, "strip_accents", p);
  cfg.tokenize_chinese_chars = optional_bool(j, "tokenize_chinese_chars", p);
  cfg.bos_token = token_content(j, "bos_token", p);
  cfg.eos_token = token_content(j, "eos_token", p);
  cfg.pad_token = token_content(j, "pad_token", p);
  cfg.unk_token = token_content(j, "unk_token", p);
  cfg.cls_token = token_content(j, "cls_token", p);
  cfg.sep_token = token_content(j, "sep_token", p);
  cfg.mask_token = token_content(j, "mask_token", p);
  if (j.contains("chat_template")) {
    const auto& t = j["chat_template"];
    if (t.is_string()) {
      cfg.chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const auto& e : t)
        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
            e["template"].is_string())
          cfg.chat_template = e["template"].get<std::string>();
    }
  }
  if (j.contains("added_tokens_decoder")) {
    const auto& d = j["added_tokens_decoder"];
    if (!d.is_object()) fail("{}: \"added_tokens_decoder\" must be an object", p);
    for (const auto& [key, value] : d.items()) {
      int32_t id = -1;
      try {
        size_t used = 0;
        id = std::stoi(key, &used);
        if (used != key.size() || id < 0) throw std::invalid_argument(key);
      } catch (const std::exception&) {
        fail("{}: \"added_tokens_decoder\" key {:?} is not a token id", p, key);
      }
      cfg.added_tokens.push_back(added_token_from_json(value, id, p));
      cfg.added_tokens.back().id = id;
    }
  }
  return cfg;
}

TokenizerJson read_tokenizer_json(const std::string& path) {
  const std::string text = read_text_file(path);
  TokenizerJson out;
  // Find model.vocab and model.merges, read them here, and hand the rest (with those two values
  // replaced by {} and []) to nlohmann::json.
  JsonScanner s(text, path);
  std::string rest, key;
  size_t copied = 0;
  auto cut = [&](const char* from, const char* to, const char* placeholder) {
    rest.append(text, copied, static_cast<size_t>(from - text.data()) - copied);
    rest += placeholder;
    copied = static_cast<size_t>(to - text.data());
  };
  if (s.peek('{')) {
    s.expect('{');
    if (!s.peek('}')) {
      do {
        s.string(key);
        s.expect(':');
        if (key != "model" || !s.peek('{')) {
          s.skip_value();
          continue;
        }
        s.expect('{');
        if (s.peek('}')) {
          s.expect('}');
          continue;
        }
        do {
          s.string(key);
          s.expect(':');
          s.ws();
          const char* from = s.pos();
          if (key == "vocab" && s.peek('{')) {
            scan_vocab(s, out.vocab);
            out.has_vocab = true;
            cut(from, s.pos(), "{}");
          } else if (key == "merges" && s.peek('[')) {
            scan_merges(s, out.merges);
            out.has_merges = true;
            cut(from, s.pos(), "[]");
          } else {
            s.skip_value();
          }
        } while (s.next('}'));
      } while (s.next('}'));
    }
  }
  rest.append(text, copied);
  out.doc = nlohmann::json::parse(rest, nullptr, /*allow_exceptions=*/false);
  if (out.doc.is_discarded()) fail("{}: not valid JSON", path);
  if (!out.doc.is_object()) fail("{}: expected a JSON object", path);
  return out;
}

std::vector<std::pair<std::string, int32_t>> read_vocab_json(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<std::pair<std::string, int32_t>> out;
  JsonScanner s(text, path);
  scan_vocab(s, out);
  s.ws();
  if (s.pos() != text.data() + text.size()) s.error("unexpected content after the object");
  return out;
}

std::vector<int32_t> encode_around_added_tokens(
    std::string_view text, const AddedTokenMatcher& raw_added, const SpecialAffixes& affixes,
    bool add_special_tokens,
    const std::function<void(std::string_view, std::vector<int32_t>&)>& encode_text) {
  std::string clean;
  if (!utf8_valid(text)) {
    clean = utf8_sanitize(text);
    text = clean;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special_tokens) out.insert(out.end(), affixes.prefix.begin(), affixes.prefix.end());
  if (raw_added.empty()) {
    encode_text(text, out);
  } else {
    std::vector<Piece> pieces;
    raw_added.split(text, pieces);
    for (const Piece& p : pieces) {
      if (p.id >= 0)
        out.push_back(p.id);
      else
        encode_text(text.substr(p.begin, p.end - p.begin), out);
    }
  }
  if (add_special_tokens) out.insert(out.end(), affixes.suffix.begin(), affixes.suffix.end());
  return out;
}

SpecialAffixes parse_post_processor(const nlohmann::json& pp, const std::string& path,
                                    const std::function<int32_t(const std::string&)>& lookup) {
  SpecialAffixes a;
  if (pp.is_null()) return a;
  const std::string type = pp.value("type", "");
  auto id_of = [&](const nlohmann::json& pair) {  // ["[CLS]", 101]
    if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer())
      fail("{}: post_processor {}: expected [token, id], found {}", path, type, pair.dump());
    return pair[1].get<int32_t>();
  };
  if (type == "ByteLevel") return a;
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    a.prefix.push_back(id_of(pp.at("cls")));
    a.suffix.push_back(id_of(pp.at("sep")));
    return a;
  }
  if (type == "Sequence") {
    for (const auto& p : pp.at("processors")) {
      SpecialAffixes s = parse_post_processor(p, path, lookup);
      a.prefix.insert(a.prefix.end(), s.prefix.begin(), s.prefix.end());
      a.suffix.insert(a.suffix.begin(), s.suffix.begin(), s.suffix.end());
    }
    return a;
  }
  if (type == "TemplateProcessing") {
    const auto& specials =
        pp.contains("special_tokens") ? pp["special_tokens"] : nlohmann::json::object();
    bool seen_a = false;
    for (const auto& item : pp.at("single")) {
      if (item.contains("Sequence")) {
        if (seen_a) fail("{}: TemplateProcessing \"single\" has two sequences", path);
        seen_a = true;
        continue;
      }
      if (!item.contains("SpecialToken"))
        fail("{}: TemplateProcessing item {} is neither Sequence nor SpecialToken", path,
             item.dump());
      const std::string name = item["SpecialToken"].at("id").get<std::string>();
      std::vector<int32_t> ids;
      if (specials.contains(name)) {
        for (const auto& v : specials[name].at("ids")) ids.push_back(v.get<int32_t>());
      } else {
        const int32_t id = lookup(name);
        if (id < 0) fail("{}: TemplateProcessing token {:?} is not in the vocabulary", path, name);
        ids.push_back(id);
      }
      auto& dst = seen_a ? a.suffix : a.prefix;
      dst.insert(dst.end(), ids.begin(), ids.end());
    }
    return a;
  }
  throw Unsupported(fmt::format("{}: post_processor type {:?} is not supported", path, type));
}

}  // namespace peft::tok
