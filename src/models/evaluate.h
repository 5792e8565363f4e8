// Scoring pre-tokenised records: the token-weighted mean negative log-likelihood of a model's
// objective over a whole file (decoders: next token; BERT: masked LM at labelled positions),
// batched with right padding, which does not change the result.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/hooks.h"

namespace peft {

class Model;

// One tokenised record (train/data.h reads every record type of CLI.md into these). labels =
// input_ids scores every token but the first for a decoder (the shift) and every position for
// BERT; -100 = not scored.
struct TokenRecord {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;
  std::vector<int32_t> token_type_ids;  // optional (BERT)
};

struct EvalResult {
  double loss = 0;            // Σ NLL / tokens (nats)
  double ppl = 0;             // exp(loss)
  int64_t tokens = 0;         // scored tokens
  double token_accuracy = 0;  // fraction of scored tokens that are the model's argmax (top-1)
};

// Scores every record in batches of batch_size (right-padded, padding masked and unscored).
EvalResult evaluate_records(Model& model, const std::vector<TokenRecord>& records,
                            int64_t batch_size, ModelHooks* hooks = nullptr);

}  // namespace peft
