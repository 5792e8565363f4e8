// peft eval: the token-weighted mean negative log-likelihood (nats) of a model (and optionally
// adapter folders) over every target token of a data file, and the perplexity. Records are read by
// train/data.h: pre-tokenised {"input_ids", "labels"} records need no tokenizer; text, prompt /
// completion and chat records use the model folder's tokenizer. Classification records with
// --pattern / --verbalizer are scored as PET does (objectives/pet.h): the loss is the mean
// cross-entropy over the class scores, with accuracy and macro-F1.
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/setup.h"
#include "cli/validate.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

struct EvalArgs {
  std::string model, data, base_dtype, pattern, verbalizer;
  std::vector<std::string> adapters;
  int64_t batch_size = 8;
  bool json = false;
};

// Classification records under a PET pattern: {"loss", "ppl", "tokens" (= scored records),
// "accuracy", "macro_f1", "records"}.
int run_eval_pet(const EvalArgs& a, api::Model& model) {
  if (a.verbalizer.empty()) throw api::Error("--pattern needs --verbalizer");
  if (!model.info().has_tokenizer)
    throw api::Error(a.model + ": --pattern needs the model folder's tokenizer");
  const api::EvalResult r = model.evaluate(
      a.data, {.batch_size = a.batch_size, .pattern = a.pattern, .verbalizer = a.verbalizer});
  if (a.json) {
    nlohmann::ordered_json out;
    out["loss"] = r.loss;
    out["ppl"] = r.ppl;
    out["tokens"] = r.tokens;
    out["accuracy"] = *r.accuracy;
    out["macro_f1"] = *r.macro_f1;
    out["records"] = r.records;
    out["peak_rss_mb"] = peak_rss_mb();
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("loss %.6f  accuracy %.4f  macro-F1 %.4f  records %lld\n", r.loss, *r.accuracy,
                *r.macro_f1, static_cast<long long>(r.tokens));
  }
  return 0;
}

int run_eval(const EvalArgs& a) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  api::Model model = api::Model::load(a.model, {.base_dtype = a.base_dtype});
  model.load_adapters(a.adapters);
  if (!a.pattern.empty() || !a.verbalizer.empty()) {
    if (a.pattern.empty()) throw api::Error("--verbalizer needs --pattern");
    return run_eval_pet(a, model);
  }
  const auto t1 = clock::now();
  api::EvalOptions options;
  options.batch_size = a.batch_size;
  const api::EvalResult r = model.evaluate(a.data, options);
  const auto t2 = clock::now();
  const double load_s = std::chrono::duration<double>(t1 - t0).count();
  const double eval_s = std::chrono::duration<double>(t2 - t1).count();
  if (stderr_is_terminal())
    std::fprintf(stderr, "loaded %s in %.2f s; scored %lld records (%lld tokens) in %.2f s\n",
                 a.model.c_str(), load_s, static_cast<long long>(r.records),
                 static_cast<long long>(r.tokens), eval_s);
  if (a.json) {
    nlohmann::ordered_json out;
    out["loss"] = r.loss;
    out["ppl"] = r.ppl;
    out["tokens"] = r.tokens;
    out["token_accuracy"] = r.token_accuracy;
    out["records"] = r.records;
    out["load_seconds"] = load_s;
    out["eval_seconds"] = eval_s;
    out["peak_rss_mb"] = peak_rss_mb();
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("loss %.6f  ppl %.4f  tokens %lld  token accuracy %.4f\n", r.loss, r.ppl,
                static_cast<long long>(r.tokens), r.token_accuracy);
  }
  return 0;
}

Runner setup_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  app.add_option("--model", a->model, "model folder (Hugging Face layout)")
      ->required()
      ->type_name("DIR")
      ->group("Model");
  app.add_option("--adapter", a->adapters,
                 "adapter folder (PEFT layout, any method); repeat to stack adapters")
      ->type_name("DIR")
      ->group("Model");
  app.add_option("--data", a->data,
                 "JSONL records: {\"input_ids\", \"labels\"} (labels optional), or text / "
                 "prompt-completion / messages with the model's tokenizer")
      ->required()
      ->type_name("FILE")
      ->group("Data");
  app.add_option("--batch-size", a->batch_size, "records per forward pass")
      ->check(at_least(1))
      ->group("Data");
  app.add_option("--pattern", a->pattern,
                 "classification records: score them with this PET pattern, e.g. \"{text} It was "
                 "{mask}.\" (adds accuracy and macro_f1)")
      ->group("Data");
  app.add_option("--verbalizer", a->verbalizer,
                 "with --pattern: JSON object label -> word, inline or a file path")
      ->group("Data");
  app.add_option(
         "--base-dtype", a->base_dtype,
         "convert the frozen matrices at load: f32, bf16, q8_0 or q4_0 (default: as stored)")
      ->check(CLI::IsMember({"f32", "bf16", "q8_0", "q4_0"}))
      ->group("Model");
  app.add_flag("--json", a->json,
               "print {\"loss\", \"ppl\", \"tokens\", \"token_accuracy\"} as one JSON object")
      ->group("Output");
  return [a]() { return run_eval(*a); };
}

PEFT_COMMAND("eval", "loss and perplexity of a model on a data file", setup_eval);

}  // namespace
}  // namespace peft::cli
