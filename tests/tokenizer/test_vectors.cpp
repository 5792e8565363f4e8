// Exact ids for every reference vector: shared/assets/tokenizer-vectors (HF tokenizers and
// SentencePiece), llama.cpp's .inp/.out pairs (and their JSONL copies), and our own vectors in
// tests/tokenizer/vectors (gen_vectors.py: tricky text, with the reference decode). One test per
// tokenizer folder, so that each big vocabulary is loaded once per test process.
#include <unistd.h>

#include "tok_testing.h"

namespace peft::testing {
namespace {

std::string shared_vectors(const std::string& name) {
  return assets_dir() + "/tokenizer-vectors/" + name;
}
std::string own_vectors(const std::string& name) {
  return std::string(PEFT_SOURCE_DIR) + "/tests/tokenizer/vectors/" + name;
}

// Every {"text", "ids"} line of a JSONL file; with "decoded" / "decoded_skip" (our vectors), also
// decode(ids) with and without special tokens.
void check_jsonl(const Tokenizer& tok, const std::string& jsonl, bool add_special) {
  const auto lines = read_jsonl(jsonl);
  ASSERT_FALSE(lines.empty()) << jsonl;
  size_t ok = 0;
  for (const auto& l : lines) {
    const std::string text = l["text"].get<std::string>();
    const bool special =
        l.contains("add_special_tokens") ? l["add_special_tokens"].get<bool>() : add_special;
    const auto want = json_ids(l["ids"]);
    const auto got = tok.encode(text, special);
    std::string why;
    if (got != want) why = "\n  want " + ids_str(want) + "\n  got  " + ids_str(got);
    if (l.contains("decoded")) {
      const std::string dec = tok.decode(want, false), dec_skip = tok.decode(want, true);
      if (dec != l["decoded"].get<std::string>())
        why += "\n  decode " + nlohmann::json(dec).dump() + " want " + l["decoded"].dump();
      if (dec_skip != l["decoded_skip"].get<std::string>())
        why += "\n  decode(skip special) " + nlohmann::json(dec_skip).dump() + " want " +
               l["decoded_skip"].dump();
    }
    if (why.empty())
      ++ok;
    else
      ADD_FAILURE() << jsonl << ": " << nlohmann::json(text).dump() << " add_special " << special
                    << why;
  }
  std::cout << "  " << std::filesystem::path(jsonl).parent_path().filename().string() << "/"
            << std::filesystem::path(jsonl).filename().string() << ": " << ok << "/" << lines.size()
            << " match\n";
}

// llama.cpp's own files: inputs separated by "\n__ggml_vocab_test__\n", one id line per input
// (HF AutoTokenizer, add_special_tokens=False).
void check_llama_cpp(const Tokenizer& tok, const std::string& name) {
  const std::string base = assets_dir() + "/llama.cpp-vocab/ggml-vocab-" + name + ".gguf";
  const std::string inp = read_file(base + ".inp"), out = read_file(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t at = 0;;) {
    const size_t next = inp.find(sep, at);
    if (next == std::string::npos) break;
    texts.push_back(inp.substr(at, next - at));
    at = next + sep.size();
  }
  std::vector<std::vector<int32_t>> ids;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream nums(line);
    ids.emplace_back();
    for (int32_t v; nums >> v;) ids.back().push_back(v);
  }
  ASSERT_EQ(texts.size(), ids.size()) << base;
  ASSERT_EQ(texts.size(), 46u);
  size_t ok = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto got = tok.encode(texts[i], false);
    if (got == ids[i])
      ++ok;
    else
      ADD_FAILURE() << base << " #" << i << " " << nlohmann::json(texts[i]).dump() << "\n  want "
                    << ids_str(ids[i]) << "\n  got  " << ids_str(got);
  }
  std::cout << "  llama.cpp-vocab/ggml-vocab-" << name << ".gguf.inp/.out: " << ok << "/"
            << texts.size() << " match\n";
}

TEST(TokenizerVectors, Qwen25TokenizerJson) {
  const Tokenizer& t = cached_tokenizer(tokenizer_dir("qwen2.5"));
  EXPECT_EQ(t.kind(), "bpe");
  check_jsonl(t, shared_vectors("qwen2.5.jsonl"), true);
  check_jsonl(t, shared_vectors("llama.cpp-qwen2.jsonl"), false);
  check_llama_cpp(t, "qwen2");
  check_jsonl(t, own_vectors("qwen2.5.jsonl"), true);
  // Byte-level BPE is lossless on NFC text: decode(encode(x)) == x.
  for (const auto& l : read_jsonl(shared_vectors("qwen2.5.jsonl"))) {
    const std::string text = l["text"].get<std::string>();
    if (text.find("\xCC\x81") != std::string::npos) continue;  // a combining accent: NFC changes it
    EXPECT_EQ(t.decode(t.encode(text, false)), text);
  }
}

TEST(TokenizerVectors, Qwen2VocabMerges) {
  const Tokenizer& t = cached_tokenizer(tokenizer_dir("qwen2"));
  EXPECT_EQ(t.kind(), "bpe");
  check_jsonl(t, shared_vectors("qwen2.5.jsonl"), true);
  check_jsonl(t, shared_vectors("llama.cpp-qwen2.jsonl"), false);
  check_jsonl(t, own_vectors("qwen2.jsonl"), true);
}

TEST(TokenizerVectors, BertUncasedTokenizerJson) {
  const Tokenizer& t = cached_tokenizer(tokenizer_dir("bert-base-uncased"));
  EXPECT_EQ(t.kind(), "wordpiece");
  check_jsonl(t, shared_vectors("bert-base-uncased.jsonl"), true);
  check_jsonl(t, shared_vectors("llama.cpp-bert-bge.jsonl"), false);
  check_llama_cpp(t, "bert-bge");
  check_jsonl(t, own_vectors("bert-base-uncased.jsonl"), true);
}

TEST(TokenizerVectors, BertUncasedVocabTxt) {
  const std::string dir = folder_with(tokenizer_dir("bert-base-uncased"),
                                      {"vocab.txt", "tokenizer_config.json"}, "bert-uncased");
  const Tokenizer& t = cached_tokenizer(dir);
  EXPECT_EQ(t.kind(), "wordpiece");
  check_jsonl(t, shared_vectors("bert-base-uncased.jsonl"), true);
  check_jsonl(t, shared_vectors("llama.cpp-bert-bge.jsonl"), false);
  check_jsonl(t, own_vectors("bert-base-uncased.jsonl"), true);
  std::filesystem::remove_all(dir);
}

TEST(TokenizerVectors, BertChineseTokenizerJson) {
  const Tokenizer& t = cached_tokenizer(tokenizer_dir("bert-base-chinese"));
  check_jsonl(t, shared_vectors("bert-base-chinese.jsonl"), true);
  check_jsonl(t, own_vectors("bert-base-chinese.jsonl"), true);
}

TEST(TokenizerVectors, BertChineseVocabTxt) {
  const std::string dir = folder_with(tokenizer_dir("bert-base-chinese"),
                                      {"vocab.txt", "tokenizer_config.json"}, "bert-chinese");
  const Tokenizer& t = cached_tokenizer(dir);
  check_jsonl(t, shared_vectors("bert-base-chinese.jsonl"), true);
  check_jsonl(t, own_vectors("bert-base-chinese.jsonl"), true);
  std::filesystem::remove_all(dir);
}

TEST(TokenizerVectors, Llama2SentencePiece) {
  const Tokenizer& t = cached_tokenizer(tokenizer_dir("llama2-spm"));
  EXPECT_EQ(t.kind(), "sentencepiece");
  check_jsonl(t, shared_vectors("llama2-spm.jsonl"), false);
  check_jsonl(t, shared_vectors("llama.cpp-llama-spm.jsonl"), false);
  check_llama_cpp(t, "llama-spm");
  check_jsonl(t, own_vectors("llama2-spm.jsonl"), false);
}

TEST(TokenizerVectors, BaichuanSentencePiece) {
  const Tokenizer& t = cached_tokenizer(tokenizer_dir("baichuan-7b"));
  check_jsonl(t, shared_vectors("baichuan-7b.jsonl"), false);
  check_jsonl(t, own_vectors("baichuan-7b.jsonl"), false);
}

// Small trained tokenizers (gen_vectors.py) for what the real ones do not use: added-token flags
// (lstrip, rstrip, single_word, normalized, non-special), NFKC, TemplateProcessing, ByteLevel
// add_prefix_space + use_regex, ignore_merges.
TEST(TokenizerVectors, TinySplitNfkcTemplate) {
  check_jsonl(cached_tokenizer(own_vectors("tiny-split")), own_vectors("tiny-split.jsonl"), true);
}
TEST(TokenizerVectors, TinyGpt2PrefixSpace) {
  check_jsonl(cached_tokenizer(own_vectors("tiny-gpt2")), own_vectors("tiny-gpt2.jsonl"), true);
}

}  // namespace
}  // namespace peft::testing
