#include "train/data.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "io/files.h"

namespace peft {
namespace {

struct RecordContext {
  const std::string& path;
  int64_t line;
};

[[noreturn]] void record_error(const RecordContext& at, const std::string& what) {
  fail("{} line {}: {}", at.path, at.line, what);
}

std::string string_field(const nlohmann::json& r, const char* key, const RecordContext& at,
                         bool required = true) {
  auto it = r.find(key);
  if (it == r.end() || it->is_null()) {
    if (required) record_error(at, fmt::format("\"{}\" is missing", key));
    return {};
  }
  if (!it->is_string())
    record_error(at, fmt::format("\"{}\" must be a string, found {}", key, it->type_name()));
  return it->get<std::string>();
}

std::vector<int32_t> id_list(const nlohmann::json& r, const char* key, const RecordContext& at,
                             int64_t vocab, bool allow_ignore) {
  const nlohmann::json& v = r.at(key);
  if (!v.is_array()) record_error(at, fmt::format("\"{}\" must be a list of integers", key));
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer())
      record_error(at, fmt::format("\"{}\"[{}] is not an integer", key, i));
    const int64_t id = v[i].get<int64_t>();
    const bool ok = (id >= 0 && id < vocab) || (allow_ignore && id == kIgnoreIndex);
    if (!ok)
      record_error(
          at, fmt::format("\"{}\"[{}] is {}, outside the vocabulary [0, {})", key, i, id, vocab));
    ids.push_back(int32_t(id));
  }
  return ids;
}

const Tokenizer& need_tokenizer(const Tokenizer* t, const RecordContext& at) {
  if (!t)
    record_error(at, "text records need a tokenizer, and the model folder has no tokenizer files");
  return *t;
}

void append_eos(const Tokenizer& tok, std::vector<int32_t>& ids) {
  if (tok.eos_id() >= 0 && (ids.empty() || ids.back() != tok.eos_id())) ids.push_back(tok.eos_id());
}

Example prompt_completion(const Tokenizer& tok, const std::string& prompt,
                          const std::string& completion) {
  Example e;
  e.input_ids = tok.encode(prompt, true);
  // Special tokens the tokenizer appends (BERT's [SEP], an add_eos_token EOS) would sit between
  // prompt and completion: keep the prompt as the text alone then.
  if (tok.kind() != "wordpiece" && tok.eos_id() >= 0 && !e.input_ids.empty() &&
      e.input_ids.back() == tok.eos_id())
    e.input_ids.pop_back();
  e.labels.assign(e.input_ids.size(), kIgnoreIndex);
  std::vector<int32_t> out = tok.encode(completion, false);
  append_eos(tok, out);
  e.input_ids.insert(e.input_ids.end(), out.begin(), out.end());
  e.labels.insert(e.labels.end(), out.begin(), out.end());
  return e;
}

Example parse_record(const nlohmann::json& r, const RecordContext& at, const Tokenizer* tok,
                     int64_t vocab) {
  if (!r.is_object()) record_error(at, "expected a JSON object");
  Example e;
  if (r.contains("input_ids")) {
    e.input_ids = id_list(r, "input_ids", at, vocab, false);
    if (r.contains("labels") && !r["labels"].is_null()) {
      e.labels = id_list(r, "labels", at, vocab, true);
      if (e.labels.size() != e.input_ids.size())
        record_error(at, fmt::format("\"labels\" has {} entries, \"input_ids\" {}", e.labels.size(),
                                     e.input_ids.size()));
    } else {
      e.labels = e.input_ids;
    }
    if (r.contains("token_type_ids")) e.token_type_ids = id_list(r, "token_type_ids", at, 2, false);
  } else if (r.contains("messages")) {
    const Tokenizer& t = need_tokenizer(tok, at);
    const nlohmann::json& m = r["messages"];
    if (!m.is_array() || m.empty()) record_error(at, "\"messages\" must be a non-empty list");
    std::vector<ChatMessage> messages;
    for (size_t i = 0; i < m.size(); ++i) {
      RecordContext inner{at.path, at.line};
      if (!m[i].is_object()) record_error(at, fmt::format("\"messages\"[{}] must be an object", i));
      messages.push_back({string_field(m[i], "role", inner), string_field(m[i], "content", inner)});
      const std::string& role = messages.back().role;
      if (role != "system" && role != "user" && role != "assistant")
        record_error(
            at, fmt::format("\"messages\"[{}].role is \"{}\", expected system, user or assistant",
                            i, role));
    }
    ChatEncoding chat = t.render_chat(messages, false);
    const std::vector<uint8_t> mask = chat.assistant_mask();
    e.input_ids = chat.ids;
    e.labels.resize(e.input_ids.size());
    for (size_t i = 0; i < e.input_ids.size(); ++i)
      e.labels[i] = mask[i] ? e.input_ids[i] : kIgnoreIndex;
    if (chat.assistant_spans.empty())
      record_error(at, "the conversation has no assistant turn to learn from");
  } else if (r.contains("prompt") || r.contains("completion")) {
    e = prompt_completion(need_tokenizer(tok, at), string_field(r, "prompt", at),
                          string_field(r, "completion", at));
  } else if (r.contains("instruction")) {
    std::string prompt = string_field(r, "instruction", at);
    const std::string input = string_field(r, "input", at, false);
    if (!input.empty()) prompt += "\n\n" + input;
    prompt += "\n\n";
    e = prompt_completion(need_tokenizer(tok, at), prompt, string_field(r, "output", at));
  } else if (r.contains("text") && (r.contains("label") || r.contains("text_b"))) {
    record_error(at,
                 "a classification record (\"text\" with \"label\" / \"text_b\"): train it with "
                 "--task pet or --task seq-cls, score it with peft classify");
  } else if (r.contains("text")) {
    const Tokenizer& t = need_tokenizer(tok, at);
    e.input_ids = t.encode(string_field(r, "text", at), true);
    if (t.kind() != "wordpiece") append_eos(t, e.input_ids);
    e.labels = e.input_ids;
  } else {
    record_error(at,
                 "unknown record: expected \"text\", \"prompt\"/\"completion\", "
                 "\"instruction\"/\"output\", \"messages\" or \"input_ids\"");
  }
  e.source_line = at.line;
  return e;
}

}  // namespace

std::vector<JsonRecord> read_json_records(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<JsonRecord> out;
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {  // a .json array of records
    nlohmann::json all;
    try {
      all = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", path, e.what());
    }
    for (size_t i = 0; i < all.size(); ++i) out.push_back({std::move(all[i]), int64_t(i + 1)});
  } else {
    int64_t line_no = 0;
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      ++line_no;
      const std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      try {
        out.push_back({nlohmann::json::parse(line), line_no});
      } catch (const nlohmann::json::exception& e) {
        fail("{} line {}: invalid JSON: {}", path, line_no, e.what());
      }
    }
  }
  if (out.empty()) fail("{}: no records", path);
  return out;
}

std::vector<Example> read_training_records(const std::string& path, const Tokenizer* tokenizer,
                                           int64_t vocab_size) {
  std::vector<Example> out;
  for (const JsonRecord& r : read_json_records(path))
    out.push_back(parse_record(r.value, {path, r.line}, tokenizer, vocab_size));
  return out;
}

void check_records_usable(const std::vector<Example>& records, const std::string& path,
                          bool shifted, int64_t max_positions, int64_t max_len) {
  int64_t targets = 0;
  for (const Example& e : records) {
    const size_t n = max_len > 0 ? std::min(e.labels.size(), size_t(max_len)) : e.labels.size();
    for (size_t i = shifted ? 1 : 0; i < n; ++i) targets += e.labels[i] != kIgnoreIndex ? 1 : 0;
    if (max_positions > 0 && int64_t(n) > max_positions)
      fail(
          "{} line {}: the record has {} tokens, more than the model's max_position_embeddings "
          "{}{}",
          path, e.source_line, e.input_ids.size(), max_positions,
          max_len > 0 ? fmt::format(" (lower --max-len to at most {})", max_positions)
                      : std::string(" (shorten or split it)"));
  }
  if (targets == 0)
    fail("{}: none of its {} records has a target token ({}): the loss would be meaningless", path,
         records.size(),
         shifted ? "every record is empty, a single token, or has every label -100"
                 : "every record is empty or has every label -100");
}

}  // namespace peft
