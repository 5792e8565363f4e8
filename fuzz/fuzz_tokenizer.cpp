// libFuzzer: a tokenizer folder holding only peft_fuzz_tokenizer_file (tokenizer.json, vocab.txt
// or tokenizer.model: one binary each, fuzz/CMakeLists.txt) with the fuzzer's bytes; a tokenizer
// that loads then encodes and decodes a fixed text (with special tokens and a chat turn).
#include <filesystem>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern const char* const peft_fuzz_tokenizer_file;  // "tokenizer.json", ...

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = peft::fuzz::scratch_dir() + "/tok";
  std::filesystem::create_directories(dir);
  peft::fuzz::write_input(std::string("tok/") + peft_fuzz_tokenizer_file, data, size);
  return peft::fuzz::run_one([&] {
    const auto tok = peft::load_tokenizer(dir);
    const auto ids = tok->encode("Hello wörld, 12 345 <|im_end|> [CLS] \t\n  ünïcode 日本語");
    (void)tok->decode(ids);
    const peft::ChatMessage turn[] = {{"user", "hi"}, {"assistant", "hello"}};
    (void)tok->render_chat(turn, true);
  });
}
