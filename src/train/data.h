// Training and evaluation records (JSONL, one record a line; a .json array also works), turned
// into tokenised Examples with Hugging Face-style labels. Record types (shared/CLI.md):
//   {"text"}                         loss on every token after the first; BOS before (when the
//                                    tokenizer adds one), EOS after
//   {"prompt", "completion"}         loss on the completion and its closing EOS only
//   {"instruction", "input", "output"}  as prompt/completion with prompt = instruction, plus
//                                    "\n\n" + input when input is not empty, plus "\n\n"
//   {"messages": [{role, content}]}  loss on assistant turns (with their end-of-turn token),
//                                    rendered with the tokenizer's chat format
//   {"input_ids", "labels"}          pre-tokenised; labels optional (then = input_ids)
//   {"text", "text_b", "label"}      classification: refused here (objectives/classification.h)
// Errors name the file, the line and the field.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "train/batch.h"

namespace peft {

// The JSON values of a records file (JSONL, or one .json array) with their 1-based line (or array
// index); blank lines are skipped. An empty file or invalid JSON is an error naming the line.
struct JsonRecord {
  nlohmann::json value;
  int64_t line = 0;
};
std::vector<JsonRecord> read_json_records(const std::string& path);

// tokenizer may be null when every record is pre-tokenised. vocab_size bounds the ids.
std::vector<Example> read_training_records(const std::string& path, const Tokenizer* tokenizer,
                                           int64_t vocab_size);

// Refuses records that would give a meaningless number instead of an error: a file in which no
// record has a target token (all empty, or every label −100; `shifted`: a decoder never predicts
// a record's first token) — training on it gives loss 0 and gradient 0, scoring it perplexity 1 —
// and a record longer than the model's `max_positions` (after truncation to `max_len`; 0: none),
// whose cost grows with the square of its length and which a BERT position table cannot index.
void check_records_usable(const std::vector<Example>& records, const std::string& path,
                          bool shifted, int64_t max_positions, int64_t max_len = 0);

}  // namespace peft
