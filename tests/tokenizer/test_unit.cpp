// Unit tests of the tokenizer building blocks: UTF-8 repair, the regex rewrite, special ids,
// vocab queries and folder selection.
#include "tok_testing.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace peft::testing {
namespace {

// Python's bytes.decode("utf-8", "replace"): one U+FFFD per maximal invalid subsequence.
TEST(TokenizerUtf8, SanitizeMatchesPythonReplace) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(tok::utf8_sanitize("plain"), "plain");
  EXPECT_EQ(tok::utf8_sanitize("\xE0\x80"), r + r);
  EXPECT_EQ(tok::utf8_sanitize("\xF0\x9F\x98"), r);                  // a truncated emoji
  EXPECT_EQ(tok::utf8_sanitize("\xED\xA0\x80"), r + r + r);          // a UTF-16 surrogate
  EXPECT_EQ(tok::utf8_sanitize("\xC0\xAF"), r + r);                  // overlong
  EXPECT_EQ(tok::utf8_sanitize("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(tok::utf8_sanitize("a\xF0\x9F\x98"
                               "b\xE2\x82"),
            "a" + r + "b" + r);
  EXPECT_EQ(tok::utf8_sanitize("\xE1\x80\xE2"), r + r);
  EXPECT_EQ(tok::utf8_sanitize(std::string("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_TRUE(tok::utf8_valid("\xF0\x9F\x98\x80 ok"));
}

TEST(TokenizerRegex, WhitespaceClassIsUnicodeWhiteSpace) {
  // U+180E is in PCRE2's \s but not in Unicode's White_Space (nor Oniguruma's \s).
  tok::Regex re(R"(\s+|[^\s]+)", false, "test");
  std::vector<tok::Span> spans;
  re.find_all("a\u180e\u3000b", spans);
  ASSERT_EQ(spans.size(), 3u);
  EXPECT_EQ(spans[0].end, 4u);  // "a" + U+180E stay together
  EXPECT_EQ(
      tok::onig_whitespace_classes(R"([^\s\p{L}])"),
      R"([^\t-\r\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\p{L}])");
  EXPECT_THROW(tok::Regex("(unclosed", false, "test"), Error);
}

// Qwen2.5: ids from tokenizer_config.json, vocab queries, add_special_tokens adds nothing.
TEST(TokenizerSpecialIds, Qwen25) {
  const Tokenizer& q = cached_tokenizer(tokenizer_dir("qwen2.5"));
  EXPECT_EQ(q.bos_id(), -1);
  EXPECT_EQ(q.eos_id(), 151645);  // <|im_end|>
  EXPECT_EQ(q.pad_id(), 151643);
  EXPECT_EQ(q.vocab_size(), 151665);
  EXPECT_EQ(q.token_to_id("Ġworld"), 1879);
  EXPECT_EQ(q.id_to_token(1879), "Ġworld");
  EXPECT_EQ(q.token_to_id("<|im_start|>"), 151644);
  EXPECT_TRUE(q.is_special(151644));
  EXPECT_FALSE(q.is_special(151657));  // <tool_call> is added but not special
  EXPECT_EQ(q.token_to_id("no such token"), -1);
  EXPECT_EQ(q.id_to_token(10'000'000), "");
  EXPECT_EQ(q.decode(std::vector<int32_t>{9707, -5, 99'999'999, 1879}), "Hello world");
  EXPECT_EQ(q.encode("Hello world"), (std::vector<int32_t>{9707, 1879}));
}

// The qwen2 fixture: vocab.json + merges.txt, its config's eos, and a template with no default
// system prompt.
TEST(TokenizerSpecialIds, Qwen2Fixture) {
  const Tokenizer& q2 = cached_tokenizer(tokenizer_dir("qwen2"));
  EXPECT_EQ(q2.eos_id(), 151643);
  EXPECT_EQ(q2.pad_id(), 151643);
  EXPECT_EQ(q2.vocab_size(), 151646);
  EXPECT_EQ(q2.chat().format, ChatFormat::kChatML);
  EXPECT_EQ(q2.chat().default_system, std::nullopt);
}

TEST(TokenizerSpecialIds, BertAndSentencePiece) {
  const Tokenizer& b = cached_tokenizer(tokenizer_dir("bert-base-uncased"));
  const auto& s = b.special_ids();
  EXPECT_EQ(s.cls, 101);
  EXPECT_EQ(s.sep, 102);
  EXPECT_EQ(s.mask, 103);
  EXPECT_EQ(s.pad, 0);
  EXPECT_EQ(s.unk, 100);
  EXPECT_EQ(b.decode(b.encode("Hello, World!"), true), "hello, world!");

  // HF's add_special_tokens=True for Llama / Baichuan without a config: BOS.
  const Tokenizer& l = cached_tokenizer(tokenizer_dir("llama2-spm"));
  EXPECT_EQ(l.bos_id(), 1);
  EXPECT_EQ(l.eos_id(), 2);
  EXPECT_EQ(l.unk_id(), 0);
  EXPECT_EQ(l.token_to_id("▁the"), 278);
  EXPECT_EQ(l.token_to_id("definitely-not-a-piece"), -1);
  EXPECT_EQ(l.token_to_id("<unk>"), 0);
  EXPECT_TRUE(l.is_special(1));
  EXPECT_FALSE(l.is_special(278));
  EXPECT_EQ(l.encode("Hello world"), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(l.encode("Hello world", false), (std::vector<int32_t>{15043, 3186}));
  EXPECT_EQ(l.decode(l.encode("Hello world")), "<s>Hello world");
  EXPECT_EQ(l.decode(l.encode("Hello world"), true), "Hello world");
  EXPECT_EQ(cached_tokenizer(tokenizer_dir("baichuan-7b")).encode("hi").front(), 1);
}

// tokenizer_config.json's add_bos_token / add_eos_token for SentencePiece.
TEST(TokenizerSpecialIds, SentencePieceConfigFlags) {
  const std::string dir =
      folder_with(tokenizer_dir("llama2-spm"), {"tokenizer.model"}, "spm-flags");
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"add_bos_token": false, "add_eos_token": true})";
  const auto t = load_tokenizer(dir);
  EXPECT_EQ(t->encode("Hello world"), (std::vector<int32_t>{15043, 3186, 2}));
  std::filesystem::remove_all(dir);
}

TEST(TokenizerLoad, ErrorsNameTheFolder) {
  try {
    load_tokenizer("/nonexistent/peft-model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/peft-model"), std::string::npos);
  }
  const auto empty =
      std::filesystem::temp_directory_path() / ("peft-tok-empty-" + std::to_string(::getpid()));
  std::filesystem::create_directories(empty);
  try {
    load_tokenizer(empty.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tokenizer files"), std::string::npos) << e.what();
  }
  // Malformed files: an error naming the file, never a crash.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"tokenizer.json", "{not json"},
      {"tokenizer.json", "[]"},
      {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})"},
      {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})"},
      {"tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})"},
      {"vocab.txt", ""},
      {"tokenizer.model", "garbage"},
      {"tokenizer_config.json", R"({"add_bos_token": "yes"})"},
  };
  for (const auto& [file, content] : bad) {
    std::filesystem::remove_all(empty);
    std::filesystem::create_directories(empty);
    std::ofstream(empty / file) << content;
    if (file == "tokenizer_config.json") std::ofstream(empty / "vocab.txt") << "[UNK]\na\n";
    EXPECT_THROW(load_tokenizer(empty.string()), Error) << file << ": " << content;
  }
  std::filesystem::remove_all(empty);
}

// A folder with tokenizer.json passed over (Unigram) falls back to its tokenizer.model.
TEST(TokenizerLoad, UnsupportedTokenizerJsonFallsBackToModel) {
  const std::string dir = folder_with(tokenizer_dir("llama2-spm"), {"tokenizer.model"}, "fallback");
  std::ofstream(dir + "/tokenizer.json") << R"({"model": {"type": "Unigram", "vocab": []}})";
  auto t = load_tokenizer(dir);
  EXPECT_EQ(t->kind(), "sentencepiece");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace peft::testing

namespace peft::testing {
namespace {

// Merges as ["a", "b"] pairs (newer tokenizer.json files) as well as "a b" strings.
TEST(TokenizerLoad, MergesAsPairs) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("peft-tok-pairs-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << R"({
    "added_tokens": [{"id": 4, "content": "<eos>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A"}},
                       {"SpecialToken": {"id": "<eos>"}}], "special_tokens": {}},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3}, "merges": [["a", "b"]]}})";
  const auto t = load_tokenizer(dir.string());
  EXPECT_EQ(t->encode("ab ab", false), (std::vector<int32_t>{2, 3, 2}));
  EXPECT_EQ(t->encode("ab ab"), (std::vector<int32_t>{2, 3, 2, 4}));
  EXPECT_EQ(t->decode(t->encode("ab ab")), "ab ab<eos>");
  EXPECT_EQ(t->eos_id(), -1);  // no config naming it
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace peft::testing
