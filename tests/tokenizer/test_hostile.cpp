// Hostile input: invalid UTF-8, a 1 MB line, 100k spaces, 10k emoji, ZWJ chains, a long word.
// Every tokenizer finishes without a crash, in time that grows about linearly (the BPE merge loop
// is a heap; WordPiece words are capped at 100 characters). The time bounds only catch a blow-up.
#include <chrono>

#include "tok_testing.h"
#include "tokenizer/unicode.h"

namespace peft::testing {
namespace {

std::string repeat(const std::string& s, size_t bytes) {
  std::string out;
  out.reserve(bytes + s.size());
  while (out.size() < bytes) out += s;
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Invalid UTF-8 is replaced by U+FFFD before tokenising: the ids are those of the repaired text,
// and decode gives valid UTF-8.
void check_invalid_utf8(const Tokenizer& t) {
  const std::vector<std::string> inputs = {"\xFF",
                                           "abc\xC3",
                                           "\xE0\x80 x",
                                           "\xED\xA0\x80",
                                           "ok \xF0\x9F\x98 then \xC0\xAF",
                                           std::string("\0\xFF\0", 3)};
  for (const std::string& s : inputs) {
    EXPECT_EQ(t.encode(s), t.encode(tok::utf8_sanitize(s))) << t.kind();
    EXPECT_TRUE(tok::utf8_valid(t.decode(t.encode(s))));
  }
}

// The 1 MB line (SentencePiece: 256 KB; libsentencepiece itself runs at ~1 MB/s on one line with
// no newline), 100k spaces, 10k emoji, 10k ZWJ-joined emoji.
void check_huge(const Tokenizer& t, size_t line_bytes) {
  const std::string line =
      repeat("The model reads 1234567 tokens; 模型读取文本 — it's fine! def f(x): return x*2 ",
             line_bytes);
  const std::string spaces(100'000, ' ');
  const std::string emoji = repeat("\xF0\x9F\x98\x80", 40'000);
  const std::string zwj =
      repeat("\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D", 40'000);
  for (const std::string* s : {&line, &spaces, &emoji, &zwj}) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = t.encode(*s, false);
    EXPECT_LT(seconds_since(t0), 120.0) << t.kind() << " " << s->size() << " bytes";
    if (s != &spaces) {
      EXPECT_FALSE(ids.empty());
    }
    if (t.kind() == "bpe") {
      EXPECT_EQ(t.decode(ids), *s);
    }
  }
}

TEST(TokenizerHostile, ByteLevelBpe) {
  const Tokenizer& q = cached_tokenizer(tokenizer_dir("qwen2.5"));
  check_invalid_utf8(q);
  EXPECT_EQ(q.decode(q.encode("abc\xC3")), "abc\xEF\xBF\xBD");
  // A token holding half of a UTF-8 sequence decodes to U+FFFD, never to invalid UTF-8.
  const auto rare = q.encode("\xF0\xA0\x80\x80");  // U+20000: several byte tokens
  ASSERT_GT(rare.size(), 1u);
  EXPECT_EQ(q.decode(std::vector<int32_t>{rare.front()}), "\xEF\xBF\xBD");
  check_huge(q, 1 << 20);
  // One long word with no split inside: the heap keeps BPE O(n log n): twice the input stays
  // well under four times the time.
  const std::string w1 = repeat("abcdefghij", 64 * 1024), w2 = repeat("abcdefghij", 128 * 1024);
  auto t0 = std::chrono::steady_clock::now();
  const auto a = q.encode(w1, false);
  const double s1 = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  const auto b = q.encode(w2, false);
  const double s2 = seconds_since(t0);
  EXPECT_EQ(q.decode(a), w1);
  EXPECT_EQ(q.decode(b), w2);
  EXPECT_LT(s2, 8 * s1 + 0.5) << s1 << " s vs " << s2 << " s";
}

TEST(TokenizerHostile, WordPiece) {
  const Tokenizer& b = cached_tokenizer(tokenizer_dir("bert-base-uncased"));
  check_invalid_utf8(b);
  check_huge(b, 1 << 20);
  EXPECT_EQ(b.encode(std::string(100'000, ' ')), (std::vector<int32_t>{101, 102}));
}

TEST(TokenizerHostile, SentencePiece) {
  for (const char* name : {"llama2-spm", "baichuan-7b"}) {
    const Tokenizer& t = cached_tokenizer(tokenizer_dir(name));
    check_invalid_utf8(t);
    check_huge(t, 1 << 18);
  }
}

}  // namespace
}  // namespace peft::testing
