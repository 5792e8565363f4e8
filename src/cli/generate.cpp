// peft generate: text from a prompt (or a chat), streamed as it is produced, with optional
// adapter folders attached.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/setup.h"
#include "cli/validate.h"
#include "infer/generate.h"
#include "infer/stop_tokens.h"

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

// Prints the text of the new ids as they come, holding back an incomplete UTF-8 sequence.
class Streamer {
 public:
  Streamer(const Tokenizer& tok, bool enabled) : tok_(tok), enabled_(enabled) {}
  void add(int32_t id) {
    ids_.push_back(id);
    const std::string text = tok_.decode(ids_, true);
    if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0)
      return;  // U+FFFD
    if (enabled_ && text.size() > printed_) {
      std::fwrite(text.data() + printed_, 1, text.size() - printed_, stdout);
      std::fflush(stdout);
    }
    printed_ = std::max(printed_, text.size());
  }
  std::string text() const { return tok_.decode(ids_, true); }

 private:
  const Tokenizer& tok_;
  bool enabled_;
  std::vector<int32_t> ids_;
  size_t printed_ = 0;
};

int run_generate(const GenerateArgs& a) {
  if (a.prompt.empty() && !a.chat) fail("give --prompt TEXT, or --chat");
  LoadedModel loaded = load_model_folder(a.model, a.base_dtype);
  if (!loaded.tokenizer) fail("{}: generation needs the model's tokenizer files", a.model);
  const Tokenizer& tok = *loaded.tokenizer;
  std::unique_ptr<MethodSet> methods = attach_adapter_folders(*loaded.model, a.adapters);

  GenerateOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.seed = a.seed;
  o.sampling.greedy = a.greedy || !a.sampling_flags;
  o.sampling.temperature = a.temperature;
  o.sampling.top_k = a.top_k;
  o.sampling.top_p = a.top_p;
  o.sampling.repetition_penalty = a.repetition_penalty;
  // The model's end tokens as transformers' generate() takes them (generation_config.json, else
  // config.json), the tokenizer's EOS, and the chat format's end of turn.
  const HFConfig& config = loaded.model->config();
  for (int64_t id : generation_eos_ids(a.model, config.eos_token_ids, config.vocab_size))
    o.stop_ids.push_back(int32_t(id));
  if (tok.eos_id() >= 0) o.stop_ids.push_back(tok.eos_id());
  if (tok.chat().turn_end >= 0) o.stop_ids.push_back(tok.chat().turn_end);

  auto run_one = [&](const std::vector<int32_t>& prompt_ids) {
    Streamer streamer(tok, !a.json);
    GenerateResult r = generate(*loaded.model, prompt_ids, o, methods ? methods->hooks() : nullptr,
                                [&](int32_t id) { streamer.add(id); });
    if (!a.json) std::printf("\n");
    return std::make_pair(r, streamer.text());
  };

  std::vector<ChatMessage> history;
  nlohmann::ordered_json out;
  auto turn = [&](const std::string& user_text) {
    std::vector<int32_t> ids;
    if (a.chat) {
      history.push_back({"user", user_text});
      ids = tok.render_chat(history, true).ids;
    } else {
      ids = tok.encode(user_text, true);
    }
    auto [r, text] = run_one(ids);
    if (a.chat) history.push_back({"assistant", text});
    out["text"] = text;
    out["ids"] = r.ids;
    out["tokens_per_s"] =
        r.seconds > 0 ? double(r.ids.size() > 1 ? r.ids.size() - 1 : 0) / r.seconds : 0.0;
    out["prompt_tokens"] = ids.size();
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
               "print {\"text\", \"ids\", \"tokens_per_s\"} instead of streaming")
      ->group("Output");
  return [a]() { return run_generate(*a); };
}

PEFT_COMMAND("generate", "generate text from a prompt or a chat", setup_generate);

}  // namespace
}  // namespace peft::cli
