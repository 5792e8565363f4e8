// Chat rendering. We do not run Jinja: each supported format is written out here, and the
// folder's chat_template is only read for ChatML's default system prompt.
//
// ChatML (Qwen): [<|im_start|>system\n{default}<|im_end|>\n]
//                <|im_start|>{role}\n{content}<|im_end|>\n ... [<|im_start|>assistant\n]
//   The default system turn is added when the first message is not a system message and the
//   template has one (Qwen2: "You are a helpful assistant.", Qwen2.5: "You are Qwen, created by
//   Alibaba Cloud. You are a helpful assistant."); with no tokenizer_config.json, Qwen2's.
//   The ids equal HF's tokenizer(apply_chat_template(...), add_special_tokens=False): the special
//   tokens split the text into the same segments that are encoded here one by one.
// Baichuan: {system} <reserved_102>(195) {user} <reserved_103>(196) {assistant} </s> ...
//   [196], every content encoded without BOS/EOS; EOS closes each assistant turn (the token the
//   model is trained to stop on, as in Baichuan's fine-tuning script).
#include "tokenizer/chat.h"

#include "core/error.h"

namespace peft {

std::vector<uint8_t> ChatEncoding::assistant_mask() const {
  std::vector<uint8_t> mask(ids.size(), 0);
  for (const auto& [b, e] : assistant_spans)
    for (size_t i = b; i < e && i < mask.size(); ++i) mask[i] = 1;
  return mask;
}

namespace {

void check_role(const ChatMessage& m) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant")
    fail("chat message role {:?} is not one of system, user, assistant", m.role);
}

void append(std::vector<int32_t>& dst, const std::vector<int32_t>& src) {
  dst.insert(dst.end(), src.begin(), src.end());
}

ChatEncoding render_chatml(const Tokenizer& t, std::span<const ChatMessage> messages,
                           bool add_generation_prompt) {
  const ChatSettings& c = t.chat();
  ChatEncoding enc;
  const std::vector<int32_t> newline = t.encode("\n", false);
  auto turn = [&](const std::string& role, const std::string& content) {
    enc.ids.push_back(c.turn_start);
    const std::vector<int32_t> seg = t.encode(role + "\n" + content, false);
    if (role == "assistant") {
      // The content starts after the tokens of "assistant\n"; should the two merge into one
      // token, that token is counted as content.
      const std::vector<int32_t> head = t.encode(role + "\n", false);
      size_t k = 0;
      while (k < head.size() && k < seg.size() && head[k] == seg[k]) ++k;
      const size_t begin = enc.ids.size() + k;
      append(enc.ids, seg);
      enc.ids.push_back(c.turn_end);
      enc.assistant_spans.emplace_back(begin, enc.ids.size());
    } else {
      append(enc.ids, seg);
      enc.ids.push_back(c.turn_end);
    }
    append(enc.ids, newline);
  };
  if ((messages.empty() || messages[0].role != "system") && c.default_system)
    turn("system", *c.default_system);
  for (const ChatMessage& m : messages) {
    check_role(m);
    turn(m.role, m.content);
  }
  if (add_generation_prompt) {
    enc.ids.push_back(c.turn_start);
    append(enc.ids, t.encode("assistant\n", false));
  }
  return enc;
}

ChatEncoding render_baichuan(const Tokenizer& t, std::span<const ChatMessage> messages,
                             bool add_generation_prompt) {
  const ChatSettings& c = t.chat();
  if (t.eos_id() < 0) fail("Baichuan chat format: the tokenizer has no EOS token");
  ChatEncoding enc;
  for (const ChatMessage& m : messages) {
    check_role(m);
    if (m.role == "system") {
      append(enc.ids, t.encode(m.content, false));
    } else if (m.role == "user") {
      enc.ids.push_back(c.user_token);
      append(enc.ids, t.encode(m.content, false));
    } else {
      enc.ids.push_back(c.assistant_token);
      const size_t begin = enc.ids.size();
      append(enc.ids, t.encode(m.content, false));
      enc.ids.push_back(t.eos_id());
      enc.assistant_spans.emplace_back(begin, enc.ids.size());
    }
  }
  if (add_generation_prompt) enc.ids.push_back(c.assistant_token);
  return enc;
}

}  // namespace

ChatEncoding Tokenizer::render_chat(std::span<const ChatMessage> messages,
                                    bool add_generation_prompt) const {
  switch (chat_.format) {
    case ChatFormat::kChatML:
      return render_chatml(*this, messages, add_generation_prompt);
    case ChatFormat::kBaichuan:
      return render_baichuan(*this, messages, add_generation_prompt);
    case ChatFormat::kNone:
      break;
  }
  fail("this {} tokenizer has no chat format we support (ChatML or Baichuan)", kind());
}

namespace tok {

std::optional<std::string> chatml_default_system(const std::string& tmpl) {
  const std::string head = "<|im_start|>system", end = "<|im_end|>";
  for (size_t at = tmpl.find(head); at != std::string::npos; at = tmpl.find(head, at + 1)) {
    size_t p = at + head.size();
    if (tmpl.compare(p, 2, "\\n") == 0)
      p += 2;
    else if (tmpl.compare(p, 1, "\n") == 0)
      p += 1;
    else
      continue;
    const size_t stop = tmpl.find(end, p);
    if (stop == std::string::npos) break;
    std::string text = tmpl.substr(p, stop - p);
    // A literal, not template code: no quotes or Jinja delimiters inside.
    if (text.empty() || text.find_first_of("'\"{}+") != std::string::npos) continue;
    std::string out;  // with the template's "\\n" escapes as newlines
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == 'n') {
        out.push_back('\n');
        ++i;
      } else {
        out.push_back(text[i]);
      }
    }
    return out;
  }
  return std::nullopt;
}

void detect_chat_format(const Tokenizer& t, const TokenizerConfig& cfg, ChatSettings& c) {
  c.has_template = cfg.chat_template.has_value();
  const int32_t start = t.token_to_id("<|im_start|>"), end = t.token_to_id("<|im_end|>");
  if (start >= 0 && end >= 0) {
    c.format = ChatFormat::kChatML;
    c.turn_start = start;
    c.turn_end = end;
    c.default_system = cfg.chat_template
                           ? chatml_default_system(*cfg.chat_template)
                           : std::optional<std::string>("You are a helpful assistant.");
    return;
  }
  if (t.kind() == "sentencepiece" && t.id_to_token(195) == "<reserved_102>" &&
      t.id_to_token(196) == "<reserved_103>") {
    c.format = ChatFormat::kBaichuan;
    c.user_token = 195;
    c.assistant_token = 196;
  }
}

}  // namespace tok
}  // namespace peft
