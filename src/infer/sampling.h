// Choosing the next token from logits: greedy, or sampling with temperature, top-k, top-p
// (nucleus) and a repetition penalty (CTRL, Keskar et al. 2019: a seen token's logit is divided
// by the penalty when positive and multiplied when negative, as transformers does), seeded.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace peft {

struct SamplingOptions {
  bool greedy = true;
  float temperature = 1.0f;
  int64_t top_k = 0;   // 0: off
  float top_p = 1.0f;  // 1: off
  float repetition_penalty = 1.0f;
};

// logits [V] (modified in place by the penalty); `seen` are the ids generated or given so far.
int32_t sample_next_token(std::vector<float>& logits, const std::vector<int32_t>& seen,
                          const SamplingOptions& options, Rng& rng);

}  // namespace peft
