// Text generation with a KV cache: the prompt is run once (prefill), then one token per step;
// stops at an end token (EOS, a chat end-of-turn) or after max_new_tokens. Attached method hooks
// (a LoRA adapter) are active. Tokens are handed to `on_token` as they are chosen (streaming).
#pragma once

#include <functional>
#include <vector>

#include "infer/sampling.h"
#include "models/model.h"

namespace peft {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  uint64_t seed = 0;
  std::vector<int32_t> stop_ids;  // generation ends after emitting one of these
};

struct GenerateResult {
  std::vector<int32_t> ids;  // the new tokens only
  bool stopped = false;      // ended at a stop id (not at max_new_tokens)
  double seconds = 0;        // decode time after the prefill
  double prefill_seconds = 0;
};

GenerateResult generate(Model& model, const std::vector<int32_t>& prompt,
                        const GenerateOptions& options, ModelHooks* hooks = nullptr,
                        const std::function<void(int32_t)>& on_token = nullptr);

}  // namespace peft
