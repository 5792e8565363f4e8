// peft generate: text from a prompt (or a chat), streamed as it is produced, with optional
// adapter folders attached.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/validate.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

struct GenerateArgs {
  std::string model, prompt, base_dtype;
  std::vector<std::string> adapters;
  bool chat = false, greedy = false, json = false;
  int64_t max_new_tokens = 64, top_k = 0;
  float temperature = 1.0f, top_p = 1.0f, repetition_penalty = 1.0f;
  uint64_t seed = 0;
  bool sampling_flags = false;
};

int run_generate(const GenerateArgs& a) {
  if (a.prompt.empty() && !a.chat) throw api::Error("give --prompt TEXT, or --chat");
  api::Model model = api::Model::load(a.model, {.base_dtype = a.base_dtype});
  if (!model.info().has_tokenizer)
    throw api::Error(a.model + ": generation needs the model's tokenizer files");
  model.load_adapters(a.adapters);

  api::GenerateOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.seed = a.seed;
  o.greedy = a.greedy || !a.sampling_flags;
  o.temperature = a.temperature;
  o.top_k = a.top_k;
  o.top_p = a.top_p;
  o.repetition_penalty = a.repetition_penalty;
  // The text streams to stdout as it comes (complete characters only).
  auto stream = [&](const std::string& piece) {
    if (!a.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  };

  std::vector<api::ChatMessage> history;
  nlohmann::ordered_json out;
  auto turn = [&](const std::string& user_text) {
    api::GenerateResult r;
    if (a.chat) {
      history.push_back({"user", user_text});
      r = model.chat(history, o, stream);
      history.push_back({"assistant", r.text});
    } else {
      r = model.generate(user_text, o, stream);
    }
    if (!a.json) std::printf("\n");
    out["text"] = r.text;
    out["ids"] = r.ids;
    out["tokens_per_s"] = r.tokens_per_s;
    out["prompt_tokens"] = r.prompt_tokens;
    out["prefill_tokens_per_s"] = r.prefill_tokens_per_s;
    out["stopped_at_end_token"] = r.stopped;
  };
  auto print_json = [&] {
    std::printf("%s\n", out.dump().c_str());
    std::fflush(stdout);
  };
  if (!a.prompt.empty()) {
    turn(a.prompt);
    if (a.json) print_json();
  } else {  // interactive chat: one user turn per line of standard input, one JSON line per turn
    if (stderr_is_terminal()) std::fprintf(stderr, "chat: type a message, Ctrl-D ends\n");
    for (std::string line; std::getline(std::cin, line);) {
      if (line.empty()) continue;
      turn(line);
      if (a.json) print_json();
    }
  }
  return 0;
}

Runner setup_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  const std::string model = "Model", prompt = "Prompt", sampling_group = "Sampling";
  app.add_option("--model", a->model, "model folder")->required()->type_name("DIR")->group(model);
  app.add_option("--adapter", a->adapters,
                 "adapter folder to apply (any method); repeat to stack adapters")
      ->type_name("DIR")
      ->group(model);
  app.add_option("--prompt", a->prompt, "prompt text (with --chat: the user's message)")
      ->group(prompt);
  app.add_flag("--chat", a->chat,
               "apply the chat template; without --prompt, read user turns from stdin")
      ->group(prompt);
  app.add_option("--max-new-tokens", a->max_new_tokens, "at most this many new tokens")
      ->check(in_range(int64_t(1), int64_t(1) << 20))
      ->group(prompt);
  app.add_flag("--greedy", a->greedy,
               "always the most likely token (the default without sampling flags)")
      ->group(sampling_group);
  auto sampling = [a](const std::string&) { a->sampling_flags = true; };
  app.add_option("--temperature", a->temperature, "sampling temperature")
      ->check(positive())
      ->each(sampling)
      ->group(sampling_group);
  app.add_option("--top-k", a->top_k, "sample from the k most likely tokens (0: all)")
      ->check(at_least(0))
      ->each(sampling)
      ->group(sampling_group);
  app.add_option("--top-p", a->top_p, "nucleus sampling mass")
      ->check(in_range(0.0, 1.0))
      ->each(sampling)
      ->group(sampling_group);
  app.add_option("--seed", a->seed, "sampling seed")
      ->check(at_least(0))
      ->each(sampling)
      ->group(sampling_group);
  app.add_option("--repetition-penalty", a->repetition_penalty,
                 "penalise tokens already present (1 = off)")
      ->check(positive())
      ->group(sampling_group);
  app.add_option("--base-dtype", a->base_dtype,
                 "frozen weights: f32, bf16, q8_0 or q4_0 (default: as stored)")
      ->check(CLI::IsMember({"f32", "bf16", "q8_0", "q4_0"}))
      ->group(model);
  app.add_flag("--json", a->json,
               "print {\"text\", \"ids\", \"tokens_per_s\", \"prefill_tokens_per_s\", ...} instead "
               "of streaming")
      ->group("Output");
  return [a]() { return run_generate(*a); };
}

PEFT_COMMAND("generate", "generate text from a prompt or a chat", setup_generate);

}  // namespace
}  // namespace peft::cli
