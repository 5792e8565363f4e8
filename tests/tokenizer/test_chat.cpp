// Chat rendering: ChatML ids equal HF's tokenizer(apply_chat_template(...)) (vectors rendered
// with jinja2 from the real templates), assistant spans cover content + end-of-turn, Baichuan's
// 195/196 format.
#include "tok_testing.h"
#include "tokenizer/chat.h"

namespace peft::testing {
namespace {

std::vector<ChatMessage> messages_of(const nlohmann::json& j) {
  std::vector<ChatMessage> m;
  for (const auto& x : j)
    m.push_back({x["role"].get<std::string>(), x["content"].get<std::string>()});
  return m;
}

// A folder with only Qwen2.5's tokenizer.json: no chat_template, so Qwen2's default system prompt.
std::string qwen_without_config() {
  static const std::string dir = [] {
    const auto d = std::filesystem::temp_directory_path() /
                   ("peft-tok-noconfig-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::filesystem::remove(d / "tokenizer.json");
    std::filesystem::create_symlink(tokenizer_dir("qwen2.5") + "/tokenizer.json",
                                    d / "tokenizer.json");
    return d.string();
  }();
  return dir;
}

TEST(TokenizerChat, ChatMLMatchesTemplates) {
  const Tokenizer& with_template = cached_tokenizer(tokenizer_dir("qwen2.5"));
  const Tokenizer& qwen2_default = cached_tokenizer(qwen_without_config());
  EXPECT_EQ(with_template.chat().format, ChatFormat::kChatML);
  EXPECT_TRUE(with_template.chat().has_template);
  EXPECT_EQ(with_template.chat().default_system.value_or(""),
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_FALSE(qwen2_default.chat().has_template);
  EXPECT_EQ(qwen2_default.chat().default_system.value_or(""), "You are a helpful assistant.");
  size_t ok = 0, n = 0;
  for (const auto& l :
       read_jsonl(std::string(PEFT_SOURCE_DIR) + "/tests/tokenizer/vectors/chat-chatml.jsonl")) {
    const Tokenizer& t = l["template"] == "qwen2.5" ? with_template : qwen2_default;
    const auto msgs = messages_of(l["messages"]);
    const ChatEncoding enc = t.render_chat(msgs, l["add_generation_prompt"].get<bool>());
    ++n;
    if (enc.ids == json_ids(l["ids"]))
      ++ok;
    else
      ADD_FAILURE() << l["template"] << " " << l["text"].dump() << "\n  want "
                    << ids_str(json_ids(l["ids"])) << "\n  got  " << ids_str(enc.ids);
    // One span per assistant message: its content and <|im_end|>, nothing of the header.
    std::vector<std::string> contents;
    for (const auto& m : msgs)
      if (m.role == "assistant") contents.push_back(m.content);
    ASSERT_EQ(enc.assistant_spans.size(), contents.size());
    for (size_t k = 0; k < contents.size(); ++k) {
      const auto [b, e] = enc.assistant_spans[k];
      ASSERT_LT(b, e);
      ASSERT_LE(e, enc.ids.size());
      EXPECT_EQ(enc.ids[e - 1], 151645);
      const std::string span =
          t.decode(std::vector<int32_t>(enc.ids.begin() + b, enc.ids.begin() + e));
      const std::string want = contents[k] + "<|im_end|>";
      EXPECT_TRUE(span.size() >= want.size() &&
                  span.compare(span.size() - want.size(), want.size(), want) == 0)
          << span;
      // Before the span: the turn header, whole ("...assistant\n") or, when the content starts
      // with a newline that merges with the header's, up to "assistant".
      const std::string head = t.decode(std::vector<int32_t>(enc.ids.begin(), enc.ids.begin() + b));
      const bool whole = head.ends_with("<|im_start|>assistant\n");
      EXPECT_TRUE(whole ||
                  (head.ends_with("<|im_start|>assistant") && contents[k].starts_with("\n")))
          << nlohmann::json(head).dump();
    }
    const auto mask = enc.assistant_mask();
    EXPECT_EQ(mask.size(), enc.ids.size());
  }
  std::cout << "  vectors/chat-chatml.jsonl: " << ok << "/" << n << " match\n";
  const std::vector<ChatMessage> bad_role = {{"wizard", "hi"}};
  EXPECT_THROW(with_template.render_chat(bad_role, false), Error);
}

TEST(TokenizerChat, DefaultSystemPromptFromTemplate) {
  EXPECT_EQ(tok::chatml_default_system(
                "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"),
            "You are a helpful assistant.");
  EXPECT_EQ(tok::chatml_default_system(
                "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}"),
            std::nullopt);
  EXPECT_EQ(tok::chatml_default_system("no chat markup"), std::nullopt);
}

TEST(TokenizerChat, BaichuanFormat) {
  const Tokenizer& t = cached_tokenizer(tokenizer_dir("baichuan-7b"));
  ASSERT_EQ(t.chat().format, ChatFormat::kBaichuan);
  const std::vector<ChatMessage> msgs = {
      {"system", "你是助手"}, {"user", "你好"}, {"assistant", "你好！"}, {"user", "再见"}};
  const ChatEncoding enc = t.render_chat(msgs, true);
  std::vector<int32_t> want = t.encode("你是助手", false);
  want.push_back(195);
  for (int32_t id : t.encode("你好", false)) want.push_back(id);
  want.push_back(196);
  const size_t begin = want.size();
  for (int32_t id : t.encode("你好！", false)) want.push_back(id);
  want.push_back(2);
  const size_t end = want.size();
  want.push_back(195);
  for (int32_t id : t.encode("再见", false)) want.push_back(id);
  want.push_back(196);
  EXPECT_EQ(enc.ids, want);
  ASSERT_EQ(enc.assistant_spans.size(), 1u);
  EXPECT_EQ(enc.assistant_spans[0], std::make_pair(begin, end));
}

TEST(TokenizerChat, NoChatFormat) {
  const std::vector<ChatMessage> ok = {{"user", "hi"}};
  EXPECT_THROW(cached_tokenizer(tokenizer_dir("bert-base-uncased")).render_chat(ok, false), Error);
  EXPECT_EQ(cached_tokenizer(tokenizer_dir("llama2-spm")).chat().format, ChatFormat::kNone);
}

}  // namespace
}  // namespace peft::testing
