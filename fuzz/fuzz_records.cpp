// libFuzzer: training / evaluation records (JSONL, or a .json array) with the demo tokenizer
// (text, prompt / completion, instruction, chat messages, pre-tokenised ids), then the checks
// that refuse unusable files.
#include <memory>

#include "fuzz_util.h"
#include "train/data.h"

#ifndef PEFT_SOURCE_DIR
#error "PEFT_SOURCE_DIR must be defined"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<peft::Tokenizer> tok =
      peft::load_tokenizer(std::string(PEFT_SOURCE_DIR) + "/data/demo");
  const std::string path = peft::fuzz::write_input("data.jsonl", data, size);
  return peft::fuzz::run_one([&] {
    const auto records = peft::read_training_records(path, tok.get(), tok->vocab_size());
    peft::check_records_usable(records, path, true, 64, 32);
  });
}
