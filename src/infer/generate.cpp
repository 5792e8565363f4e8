#include "infer/generate.h"

#include <algorithm>
#include <chrono>

namespace peft {

GenerateResult generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                        ModelHooks* hooks, const std::function<void(int32_t)>& on_token) {
  if (!model.is_causal_lm())
    fail("generation needs a causal language model; {} is a masked LM", model.config().model_type);
  if (prompt.empty()) fail("the prompt has no tokens");
  const HFConfig& c = model.config();
  const int64_t capacity = int64_t(prompt.size()) + o.max_new_tokens;
  if (c.max_position_embeddings > 0 && capacity > c.max_position_embeddings)
    fail(
        "prompt ({} tokens) + --max-new-tokens ({}) exceeds the model's max_position_embeddings {}",
        prompt.size(), o.max_new_tokens, c.max_position_embeddings);
  NoGradGuard no_grad;
  KVCache cache(c.num_hidden_layers, 1, capacity + (hooks ? hooks->num_virtual_tokens() : 0),
                c.num_key_value_heads, c.head_dim);
  Rng rng(o.seed, 3);
  GenerateResult result;
  std::vector<int32_t> seen = prompt;
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  std::vector<int32_t> step_ids = prompt;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    ModelInputs in;
    in.input_ids = Tensor::from_vector_i32(step_ids, {1, int64_t(step_ids.size())});
    Var hidden = model.forward(in, {.hooks = hooks, .cache = &cache});
    // Logits of the last position only.
    Var last = gather_rows(hidden, {int32_t(hidden->value.numel() / hidden->value.dim(-1) - 1)});
    std::vector<float> logits = model.logits(last)->value.to_vector();
    if (i == 0) {
      result.prefill_seconds = std::chrono::duration<double>(Clock::now() - start).count();
      start = Clock::now();
    }
    const int32_t next = sample_next_token(logits, seen, o.sampling, rng);
    result.ids.push_back(next);
    seen.push_back(next);
    if (on_token) on_token(next);
    if (std::find(o.stop_ids.begin(), o.stop_ids.end(), next) != o.stop_ids.end()) {
      result.stopped = true;
      break;
    }
    step_ids = {next};
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace peft
