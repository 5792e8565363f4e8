// peft train: fine-tunes a model on a data file with a PEFT method (peft/registry.cpp) or in
// full, writing the adapter (PEFT layout) or the model folder, metrics.jsonl, loss.svg and
// checkpoints to --out. The run is peft::api::train(); this file maps the flags to its options
// and prints what its callbacks report.
#include <algorithm>
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/setup.h"
#include "cli/validate.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

struct TrainArgs {
  std::string model, data, out, config, eval_data, base_dtype;
  bool no_shuffle = false, json = false;
  api::TrainOptions options;
  // Method flags (the API's method settings, each name once): the text of those given, and
  // switches.
  std::map<std::string, std::string> method_text;
  std::map<std::string, bool> method_switch;
  std::vector<std::pair<std::string, CLI::Option*>> method_options;
};

// The method flags given on the command line (or from the YAML config), name -> text.
std::map<std::string, std::string> given_method_flags(const TrainArgs& a) {
  std::map<std::string, std::string> given;
  for (const auto& [name, opt] : a.method_options) {
    if (opt->count() == 0) continue;
    auto sw = a.method_switch.find(name);
    given[name] =
        sw != a.method_switch.end() ? (sw->second ? "true" : "false") : a.method_text.at(name);
  }
  return given;
}

int run_train(const TrainArgs& a) {
  api::TrainOptions o = a.options;
  o.method_settings = given_method_flags(a);
  o.base_dtype = a.base_dtype;
  o.data = a.data;
  o.eval_data = a.eval_data;
  o.out_dir = a.out;
  o.shuffle = !a.no_shuffle;
  o.progress = stderr_is_terminal();
  // Under mpirun rank 0 alone writes and reports.
  const bool root = api::process_rank() == 0;
  const bool human = root && (stderr_is_terminal() || !a.json);
  if (api::process_count() == 1) api::install_interrupt_handler();  // Ctrl-C: step, checkpoint
  api::TrainCallbacks callbacks;
  callbacks.on_data = [&](const api::TrainData& d) {
    if (human && o.packing)
      std::fprintf(stderr, "packed %lld records into %lld rows of up to %lld tokens\n",
                   (long long)d.records, (long long)d.rows, (long long)o.max_len);
    if (root && d.truncated_records > 0)  // a warning: stderr even with --json
      std::fprintf(
          stderr,
          "note: %lld training records were longer than --max-len %lld and were truncated\n",
          (long long)d.truncated_records, (long long)o.max_len);
  };
  callbacks.on_start = [&](const api::TrainStart& s) {
    if (human)
      std::fprintf(
          stderr,
          "training %s (%s) on %lld rows for %lld steps: %lld trainable parameters "
          "(%.4f%% of %lld)\n",
          a.model.c_str(), s.method.c_str(), (long long)s.rows, (long long)s.total_steps,
          (long long)s.trainable_params,
          100.0 * double(s.trainable_params) / double(std::max<int64_t>(1, s.model_params)),
          (long long)s.model_params);
    if (human && s.ranks > 1)
      std::fprintf(stderr, "data-parallel over %d ranks (%s): each takes 1/%d of every batch%s\n",
                   s.ranks, api::mpi_library().c_str(), s.ranks,
                   o.shard_optimizer ? "; AdamW state sharded (ZeRO-1)" : "");
  };
  const api::TrainResult r = api::train(a.model, o, callbacks);
  if (!root) return 0;
  nlohmann::ordered_json out;
  out["steps"] = r.steps;
  out["final_loss"] = r.final_loss;
  out["eval_loss"] = r.eval_loss ? nlohmann::json(*r.eval_loss) : nlohmann::json(nullptr);
  out["method"] = r.method;
  out["trainable_params"] = r.trainable_params;
  out["tokens_per_s"] = r.tokens_per_s;
  out["peak_rss_mb"] = peak_rss_mb();
  out["memory_estimate_mb"] = r.memory_estimate_mb;  // the guard's estimate, for comparison
  out["truncated_records"] = r.truncated_records;
  out["ranks"] = r.ranks;
  out["allreduce_share"] = r.seconds > 0 ? r.allreduce_seconds / r.seconds : 0.0;
  out["rank_wait_share"] = r.seconds > 0 ? r.wait_seconds / r.seconds : 0.0;
  out["allreduce_overlap"] = r.allreduce_overlapped;
  out["task"] = r.task;
  if (r.eval_accuracy) {  // the objective's own metrics of the final model (accuracy on masked
                          // tokens or on records)
    out["eval_accuracy"] = *r.eval_accuracy;
    if (r.eval_macro_f1) out["eval_macro_f1"] = *r.eval_macro_f1;
    if (human)
      std::fprintf(
          stderr, "eval: loss %.6f  accuracy %.4f%s\n", *r.eval_objective_loss, *r.eval_accuracy,
          r.eval_macro_f1 ? fmt::format("  macro-F1 {:.4f}", *r.eval_macro_f1).c_str() : "");
  }
  if (human)
    std::fprintf(stderr, "wrote %s: %s, metrics.jsonl, loss.svg%s (%.1f s)\n", a.out.c_str(),
                 r.written.c_str(), o.save_every > 0 ? ", checkpoint-*/" : "", r.seconds);
  if (a.json) std::printf("%s\n", out.dump().c_str());
  return 0;
}

Runner setup_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  const std::string model = "Model", data = "Data", method = "Method", optim = "Optimisation",
                    output = "Output";
  app.add_option("--model", a->model, "base model folder (Hugging Face layout)")
      ->required()
      ->type_name("DIR")
      ->group(model);
  app.add_option("--base-dtype", a->base_dtype,
                 "frozen base weights: f32, bf16, q8_0 or q4_0 (default: as stored)")
      ->check(CLI::IsMember({"f32", "bf16", "q8_0", "q4_0"}))
      ->group(model);
  app.add_option("--data", a->data, "training records (JSONL or a .json array)")
      ->required()
      ->type_name("FILE")
      ->group(data);
  app.add_option("--eval-data", a->eval_data, "evaluation records")->type_name("FILE")->group(data);
  app.add_option("--task", a->options.task,
                 fmt::format("training objective: {} (default: mlm for BERT, causal-lm for "
                             "decoders)",
                             fmt::join(api::objective_names(), ", ")))
      ->group(data);
  app.add_option("--pattern", a->options.patterns,
                 "PET pattern with {text}, {text_b}, {mask}, e.g. \"{text} It was {mask}.\"")
      ->type_name("TEXT")
      ->group(data);
  app.add_option("--verbalizer", a->options.verbalizer,
                 "PET verbalizer: JSON label -> word(s), inline or a file")
      ->type_name("JSON|FILE")
      ->group(data);
  app.add_option("--labels", a->options.labels,
                 "seq-cls class names in order (default: the sorted labels of --data)")
      ->delimiter(',')
      ->type_name("A,B,...")
      ->group(data);
  app.add_option("--pet-mlm-weight", a->options.pet_mlm_weight,
                 "pet: PET's α, loss = (1 - α)·CE + α·MLM on --unlabeled-data (PET uses 1e-4)")
      ->check(number_in({.lo = 0, .hi = 1}))
      ->group(data);
  app.add_option("--unlabeled-data", a->options.unlabeled_data,
                 "pet: unlabeled records for the auxiliary MLM loss (texts, or input_ids/labels)")
      ->type_name("FILE")
      ->group(data);
  app.add_option("--distill-temperature", a->options.distill_temperature,
                 "records with soft_labels (peft classify --distill-out): KL at this temperature")
      ->check(number_in({.lo = 0, .hi = {}, .lo_open = true}))
      ->group(data);
  app.add_option("--mlm-probability", a->options.mlm_probability,
                 "mlm: share of tokens selected for masking")
      ->check(number_in({.lo = 0, .hi = 1, .lo_open = true}))
      ->group(data);
  app.add_flag("--whole-word-mask", a->options.whole_word_mask,
               "mlm: select whole words (all their pieces) instead of tokens")
      ->group(data);
  app.add_option("--max-len", a->options.max_len, "truncate records to this many tokens")
      ->check(at_least(1))
      ->group(data);
  app.add_flag("--packing", a->options.packing, "pack short records into rows of --max-len")
      ->group(data);
  app.add_flag("--no-shuffle", a->no_shuffle, "keep the data order")->group(data);
  app.add_option("--method", a->options.method,
                 fmt::format("{} or full; several, comma-separated (A,B), train stacked, e.g. "
                             "LoRA with a prompt-learning method, each saved in its own "
                             "sub-folder (with --adapter / --resume: the folder's methods)",
                             fmt::join(api::method_names(), ", ")))
      ->default_str(api::method_names().front())
      ->group(method);
  app.add_option("--adapter", a->options.adapter,
                 "continue training an existing adapter folder (any method; PEFT's or ours; a "
                 "stacked run's folder continues the whole stack); method flags given must agree "
                 "with its config")
      ->type_name("DIR")
      ->group(method);
  app.add_option("--epochs", a->options.epochs, "passes over the data")
      ->check(at_least(1))
      ->group(optim);
  app.add_option("--max-steps", a->options.max_steps,
                 "optimizer steps; overrides --epochs when > 0")
      ->check(at_least(0))
      ->group(optim);
  app.add_option("--lr", a->options.lr, "peak learning rate")->check(positive())->group(optim);
  app.add_option("--batch-size", a->options.batch_size, "records per micro-batch")
      ->check(at_least(1))
      ->group(optim);
  app.add_option("--grad-accum", a->options.grad_accum, "micro-batches per optimizer step")
      ->check(at_least(1))
      ->group(optim);
  app.add_option("--warmup-steps", a->options.warmup_steps, "linear warmup steps")
      ->check(at_least(0))
      ->group(optim);
  app.add_option("--scheduler", a->options.scheduler, "learning-rate schedule after warmup")
      ->check(CLI::IsMember({"constant", "linear", "cosine"}))
      ->group(optim);
  app.add_option("--weight-decay", a->options.weight_decay, "AdamW decoupled weight decay")
      ->check(at_least(0.0))
      ->group(optim);
  app.add_option("--clip-grad", a->options.clip_grad, "clip the global gradient norm (0 disables)")
      ->check(at_least(0.0))
      ->group(optim);
  app.add_option("--seed", a->options.seed, "seed for initialisation, shuffling and dropout")
      ->check(at_least(0))
      ->group(optim);
  app.add_option("--out", a->out, "output folder (adapter, metrics.jsonl, loss.svg, checkpoints)")
      ->required()
      ->type_name("DIR")
      ->group(output);
  app.add_flag("--overwrite", a->options.overwrite, "replace a non-empty --out")->group(output);
  app.add_option("--resume", a->options.resume, "continue from a checkpoint folder")
      ->type_name("DIR")
      ->group(output);
  app.add_flag("--resume-accept-changes", a->options.resume_accept_changes,
               "resume even though --lr, the data or another setting differs from the checkpoint's")
      ->group(output);
  app.add_option("--eval-every", a->options.eval_every, "evaluate every N steps (0: at the end)")
      ->check(at_least(0))
      ->group(output);
  app.add_option("--save-every", a->options.save_every,
                 "write checkpoint-STEP/ every N steps (0: never)")
      ->check(at_least(0))
      ->group(output);
  app.add_option("--log-every", a->options.log_every, "metrics.jsonl line every N steps (0: none)")
      ->check(at_least(0))
      ->group(output);
  app.add_flag("--json", a->json, "print a JSON summary as the last line")->group(output);
  app.add_flag("--gradient-checkpointing", a->options.gradient_checkpointing,
               "decoders: keep only each layer's input and recompute the layer in backward (far "
               "less memory, one more forward pass of time)")
      ->group("Runtime");
  app.add_flag("--shard-optimizer", a->options.shard_optimizer,
               "under mpirun: each rank keeps the AdamW state of 1/N of the parameters (ZeRO-1)")
      ->group("Runtime");
  app.add_option("--allreduce-dtype", a->options.allreduce_dtype,
                 "under mpirun: sum gradients in f32 or bf16 (half the traffic)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->group("Runtime");
  app.add_option("--allreduce-overlap", a->options.allreduce_overlap,
                 "under mpirun: sum gradients in buckets during backward (on), in one all-reduce "
                 "after it (off), or on from 16M trainable parameters (auto)")
      ->check(CLI::IsMember({"on", "off", "auto"}))
      ->capture_default_str()
      ->group("Runtime");
  app.add_option("--allreduce-bucket-mb", a->options.allreduce_bucket_mb,
                 "under mpirun, overlapped: gradient bucket size in MiB")
      ->check(positive())
      ->capture_default_str()
      ->group("Runtime");
  app.add_option("--config", a->config,
                 "YAML run config: flag names (without --) to values; flags given win")
      ->type_name("FILE")
      ->group("Runtime");
  // Every method's flags (peft/registry.cpp), each name once; they become the method's JSON.
  using T = api::MethodSetting::Type;
  for (const api::MethodSetting& f : api::method_settings()) {
    CLI::Option* opt = f.type == T::Bool
                           ? app.add_flag("--" + f.name, a->method_switch[f.name], f.help)
                           : app.add_option("--" + f.name, a->method_text[f.name], f.help);
    if (f.min || f.max) {
      NumberRange range;
      range.lo = f.min, range.hi = f.max, range.lo_open = f.min_open, range.hi_open = f.max_open;
      range.integer = f.type == T::Int;
      opt->check(number_in(range));
    }
    if (!f.choices.empty()) opt->check(CLI::IsMember(f.choices, CLI::ignore_case));
    if (f.type == T::Int || f.type == T::Float || f.type == T::IntList || f.type == T::Json)
      opt->type_name(f.type == T::Int     ? "INT"
                     : f.type == T::Float ? "FLOAT"
                     : f.type == T::Json  ? "JSON"
                                          : "I,J,...");
    opt->group(f.group);
    a->method_options.emplace_back(f.name, opt);
  }
  return [a]() { return run_train(*a); };
}

PEFT_COMMAND("train", "fine-tune a model with a PEFT method or in full", setup_train);

}  // namespace
}  // namespace peft::cli
