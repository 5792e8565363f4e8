// peft train: fine-tunes a model on a data file with a PEFT method (LoRA) or in full, writing the
// adapter (PEFT layout) or the model folder, metrics.jsonl, loss.svg and checkpoints to --out.
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/setup.h"
#include "cli/validate.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "models/registry.h"
#include "train/data.h"
#include "train/trainer.h"

namespace peft::cli {
namespace {
namespace fs = std::filesystem;

struct TrainArgs {
  std::string model, data, out, method = "lora", config, task = "causal-lm", eval_data, resume,
                                adapter, base_dtype, scheduler = "linear";
  int64_t epochs = 1, max_steps = 0, batch_size = 4, grad_accum = 1, max_len = 512,
          warmup_steps = 0, eval_every = 0, save_every = 0, log_every = 1;
  float lr = 2e-4f, weight_decay = 0.0f, clip_grad = 1.0f;
  uint64_t seed = 42;
  bool no_shuffle = false, overwrite = false, packing = false, json = false;
  // LoRA (PEFT's names)
  int r = 8;
  float lora_alpha = 8.0f, lora_dropout = 0.0f;
  std::string target_modules, lora_bias = "none", init_lora_weights = "true", layers_to_transform,
                              rank_pattern, alpha_pattern;
  bool use_rslora = false;
};

LoraConfig lora_config_from(const TrainArgs& a, const std::string& model_dir) {
  nlohmann::json j{{"peft_type", "LORA"},
                   {"r", a.r},
                   {"lora_alpha", a.lora_alpha},
                   {"lora_dropout", a.lora_dropout},
                   {"bias", a.lora_bias},
                   {"use_rslora", a.use_rslora},
                   {"base_model_name_or_path", model_dir}};
  if (!a.target_modules.empty()) {
    if (a.target_modules == "all-linear" ||
        a.target_modules.find_first_of("*()[]|\\^$") != std::string::npos)
      j["target_modules"] = a.target_modules;  // "all-linear" or a regex
    else {
      std::vector<std::string> names;
      std::stringstream ss(a.target_modules);
      for (std::string n; std::getline(ss, n, ',');)
        if (!n.empty()) names.push_back(n);
      j["target_modules"] = names;
    }
  }
  if (a.init_lora_weights == "gaussian")
    j["init_lora_weights"] = "gaussian";
  else
    j["init_lora_weights"] = a.init_lora_weights != "false";
  if (!a.layers_to_transform.empty()) {
    std::vector<int> layers;
    std::stringstream ss(a.layers_to_transform);
    for (std::string n; std::getline(ss, n, ',');) {
      try {
        layers.push_back(std::stoi(n));
      } catch (const std::exception&) {
        fail("--layers-to-transform: \"{}\" is not a layer index", n);
      }
    }
    j["layers_to_transform"] = layers;
  }
  auto pattern = [](const std::string& flag, const std::string& text) {
    try {
      nlohmann::json p = nlohmann::json::parse(text);
      if (!p.is_object()) throw std::runtime_error("not an object");
      return p;
    } catch (const std::exception&) {
      fail("{}: expected a JSON object such as '{{\"v_proj\": 4}}', found '{}'", flag, text);
    }
  };
  if (!a.rank_pattern.empty()) j["rank_pattern"] = pattern("--rank-pattern", a.rank_pattern);
  if (!a.alpha_pattern.empty()) j["alpha_pattern"] = pattern("--alpha-pattern", a.alpha_pattern);
  return LoraConfig::from_json(j, "the LoRA flags");
}

// --out must be new or empty, unless --overwrite, or --resume from a checkpoint inside it.
void prepare_out_dir(const TrainArgs& a) {
  if (fs::exists(a.out) && !fs::is_directory(a.out))
    fail("--out {}: exists and is not a folder", a.out);
  const bool non_empty = fs::exists(a.out) && !fs::is_empty(a.out);
  if (non_empty && !a.overwrite) {
    const bool resuming_inside =
        !a.resume.empty() &&
        fs::weakly_canonical(a.resume).string().rfind(fs::weakly_canonical(a.out).string(), 0) == 0;
    if (!resuming_inside)
      fail(
          "--out {}: folder is not empty (use --overwrite to replace it, or --resume a checkpoint "
          "in it)",
          a.out);
  }
  fs::create_directories(a.out);
  if (a.overwrite && a.resume.empty()) fs::remove(join_path(a.out, "metrics.jsonl"));
}

// A full fine-tune's output: a Hugging Face model folder with the trained weights (f32).
void save_model_folder(const std::string& dir, const Model& model, const ParamStore& params,
                       const std::string& source_dir) {
  std::vector<TensorToWrite> tensors;
  for (const ParamStore::Entry& e : params.entries())
    tensors.push_back({e.name, DType::F32, e.shape, [v = e.var]() { return v->value; }});
  write_safetensors(join_path(dir, "model.safetensors"), tensors);
  nlohmann::json config = hf_config_to_json(model.config());
  config["torch_dtype"] = "float32";
  write_json_atomic(join_path(dir, "config.json"), config);
  copy_tokenizer_files(source_dir, dir);
}

int run_train(const TrainArgs& a) {
  if (a.task != "causal-lm")
    fail("--task {}: this version trains the causal-LM / masked-LM objective only", a.task);
  if (a.method != "lora" && a.method != "full")
    fail(
        "--method {}: this version trains lora and full; adapter, prefix, ptuning, ptuning-v2 and "
        "prompt "
        "are not available yet",
        a.method);
  prepare_out_dir(a);
  const bool human = stderr_is_terminal() || !a.json;
  LoadedModel loaded = load_model_folder(a.model, a.method == "full" ? "f32" : a.base_dtype);
  Model& model = *loaded.model;
  const int64_t vocab = model.config().vocab_size;
  std::vector<Example> train_examples =
      read_training_records(a.data, loaded.tokenizer.get(), vocab);
  std::vector<Example> eval_examples;
  if (!a.eval_data.empty())
    eval_examples = read_training_records(a.eval_data, loaded.tokenizer.get(), vocab);

  BatchingOptions batching;
  batching.batch_size = a.batch_size;
  batching.max_len = a.max_len;
  batching.packing = a.packing;
  batching.shuffle = !a.no_shuffle;
  batching.shifted = model.is_causal_lm();
  batching.pad_id =
      loaded.tokenizer && loaded.tokenizer->pad_id() >= 0 ? loaded.tokenizer->pad_id() : 0;
  const size_t train_records = train_examples.size();
  BatchBuilder train_data(std::move(train_examples), batching);
  if (human && a.packing)
    std::fprintf(stderr, "packed %zu records into %zu rows of up to %lld tokens\n", train_records,
                 train_data.num_examples(), (long long)a.max_len);
  BatchingOptions eval_batching = batching;
  eval_batching.shuffle = false;
  eval_batching.packing = false;
  std::unique_ptr<BatchBuilder> eval_data;
  if (!a.eval_data.empty())
    eval_data = std::make_unique<BatchBuilder>(std::move(eval_examples), eval_batching);
  if (train_data.truncated() > 0)  // a warning: stderr even with --json
    std::fprintf(stderr,
                 "note: %lld training records were longer than --max-len %lld and were truncated\n",
                 (long long)train_data.truncated(), (long long)a.max_len);

  ParamStore params;
  Rng init_rng(a.seed, 1), dropout_rng(a.seed, 2);
  std::unique_ptr<LoraMethod> lora;
  HookStack hooks;
  SaveAdapter save;
  if (a.method == "lora") {
    const std::string source = !a.resume.empty() ? a.resume : a.adapter;
    LoraConfig config = source.empty() ? lora_config_from(a, a.model) : read_lora_config(source);
    config.base_model_name_or_path = a.model;
    lora = attach_lora(model, config, params);
    if (source.empty())
      lora->initialize(init_rng);
    else
      load_lora_weights(source, params);
    lora->set_dropout_rng(&dropout_rng);
    hooks.add(std::shared_ptr<ModelHooks>(lora.get(), [](ModelHooks*) {}));
    save = [&](const std::string& dir) { save_lora_adapter(dir, *lora, params); };
  } else {
    model.make_trainable(params);
    save = [&](const std::string& dir) { save_model_folder(dir, model, params, a.model); };
  }
  model.set_training(true, &dropout_rng);

  LossFunction loss = [&](const Batch& b, float normaliser) {
    ModelInputs in;
    in.input_ids = b.input_ids;
    in.attention_mask = b.attention_mask;
    in.token_type_ids = b.token_type_ids;
    if (b.segment_ids.defined()) {  // packed rows: positions restart, attention stays in a record
      in.position_ids = b.positions;
      in.segment_ids = b.segment_ids;
    }
    Var hidden = model.forward(in, hooks.empty() ? nullptr : &hooks);
    CrossEntropyOptions o;
    o.normaliser = normaliser;
    return model.loss(hidden, b.labels, o);
  };

  TrainerOptions o;
  o.epochs = a.epochs;
  o.max_steps = a.max_steps;
  o.grad_accum = a.grad_accum;
  o.lr = a.lr;
  o.warmup_steps = a.warmup_steps;
  o.schedule = schedule_from_name(a.scheduler);
  o.adamw.weight_decay = a.weight_decay;
  o.clip_grad = a.clip_grad;
  o.seed = a.seed;
  o.eval_every = a.eval_every;
  o.save_every = a.save_every;
  o.log_every = a.log_every;
  o.out_dir = a.out;
  o.progress = stderr_is_terminal();
  o.plot_title = fmt::format("{} fine-tune of {} ({})", a.method, folder_name(a.model),
                             model.config().model_type);
  Trainer trainer(params, train_data, eval_data.get(), loss, save, o);
  trainer.track_rng(&dropout_rng);
  if (!a.resume.empty()) trainer.resume_from(a.resume);

  int64_t trainable = 0;
  for (const auto& e : params.entries()) trainable += e.numel;
  if (human)
    std::fprintf(
        stderr,
        "training %s (%s) on %zu rows for %lld steps: %lld trainable parameters (%.4f%% of %lld)\n",
        a.model.c_str(), a.method.c_str(), train_data.num_examples(),
        (long long)trainer.total_steps(), (long long)trainable,
        100.0 * double(trainable) / double(std::max<int64_t>(1, model.parameter_count())),
        (long long)model.parameter_count());
  const TrainResult result = trainer.train();
  save(a.out);
  nlohmann::ordered_json out;
  out["steps"] = result.steps;
  out["final_loss"] = result.final_loss;
  out["eval_loss"] = result.eval_loss ? nlohmann::json(*result.eval_loss) : nlohmann::json(nullptr);
  out["trainable_params"] = trainable;
  out["tokens_per_s"] = result.tokens_per_s;
  out["peak_rss_mb"] = peak_rss_mb();
  out["truncated_records"] = train_data.truncated();
  if (human)
    std::fprintf(stderr, "wrote %s: %s, metrics.jsonl, loss.svg%s (%.1f s)\n", a.out.c_str(),
                 a.method == "lora" ? "adapter_config.json + adapter_model.safetensors"
                                    : "config.json + model.safetensors",
                 a.save_every > 0 ? ", checkpoint-*/" : "", result.seconds);
  if (a.json) std::printf("%s\n", out.dump().c_str());
  return 0;
}

Runner setup_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  const std::string model = "Model", data = "Data", method = "Method", lora = "LoRA",
                    optim = "Optimisation", output = "Output";
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
  app.add_option("--task", a->task, "training objective")->group(data);
  app.add_option("--max-len", a->max_len, "truncate records to this many tokens")
      ->check(at_least(1))
      ->group(data);
  app.add_flag("--packing", a->packing, "pack short records into rows of --max-len")->group(data);
  app.add_flag("--no-shuffle", a->no_shuffle, "keep the data order")->group(data);
  app.add_option("--method", a->method, "lora or full")->group(method);
  app.add_option("--adapter", a->adapter, "continue training an existing LoRA adapter folder")
      ->type_name("DIR")
      ->group(method);
  app.add_option("--r", a->r, "LoRA rank")->check(at_least(1))->group(lora);
  app.add_option("--lora-alpha", a->lora_alpha, "LoRA alpha; scale = alpha / r")
      ->check(positive())
      ->group(lora);
  app.add_option("--lora-dropout", a->lora_dropout, "dropout on the LoRA input")
      ->check(at_least_and_below(0.0, 1.0))
      ->group(lora);
  app.add_option("--target-modules", a->target_modules,
                 "comma-separated module names (suffix match), a regex, or all-linear (default: "
                 "per architecture)")
      ->group(lora);
  app.add_option("--lora-bias", a->lora_bias, "none, all or lora_only")
      ->check(CLI::IsMember({"none", "all", "lora_only"}))
      ->group(lora);
  app.add_flag("--use-rslora", a->use_rslora, "scale by alpha / sqrt(r)")->group(lora);
  app.add_option("--init-lora-weights", a->init_lora_weights, "true, gaussian or false")
      ->check(CLI::IsMember({"true", "false", "gaussian"}))
      ->group(lora);
  app.add_option("--layers-to-transform", a->layers_to_transform, "comma-separated layer indices")
      ->group(lora);
  app.add_option("--rank-pattern", a->rank_pattern, "JSON object: module pattern -> rank")
      ->group(lora);
  app.add_option("--alpha-pattern", a->alpha_pattern, "JSON object: module pattern -> alpha")
      ->group(lora);
  app.add_option("--epochs", a->epochs, "passes over the data")->check(at_least(1))->group(optim);
  app.add_option("--max-steps", a->max_steps, "optimizer steps; overrides --epochs when > 0")
      ->check(at_least(0))
      ->group(optim);
  app.add_option("--lr", a->lr, "peak learning rate")->check(positive())->group(optim);
  app.add_option("--batch-size", a->batch_size, "records per micro-batch")
      ->check(at_least(1))
      ->group(optim);
  app.add_option("--grad-accum", a->grad_accum, "micro-batches per optimizer step")
      ->check(at_least(1))
      ->group(optim);
  app.add_option("--warmup-steps", a->warmup_steps, "linear warmup steps")
      ->check(at_least(0))
      ->group(optim);
  app.add_option("--scheduler", a->scheduler, "learning-rate schedule after warmup")
      ->check(CLI::IsMember({"constant", "linear", "cosine"}))
      ->group(optim);
  app.add_option("--weight-decay", a->weight_decay, "AdamW decoupled weight decay")
      ->check(at_least(0.0))
      ->group(optim);
  app.add_option("--clip-grad", a->clip_grad, "clip the global gradient norm (0 disables)")
      ->check(at_least(0.0))
      ->group(optim);
  app.add_option("--seed", a->seed, "seed for initialisation, shuffling and dropout")
      ->check(at_least(0))
      ->group(optim);
  app.add_option("--out", a->out, "output folder (adapter, metrics.jsonl, loss.svg, checkpoints)")
      ->required()
      ->type_name("DIR")
      ->group(output);
  app.add_flag("--overwrite", a->overwrite, "replace a non-empty --out")->group(output);
  app.add_option("--resume", a->resume, "continue from a checkpoint folder")
      ->type_name("DIR")
      ->group(output);
  app.add_option("--eval-every", a->eval_every, "evaluate every N steps (0: at the end)")
      ->check(at_least(0))
      ->group(output);
  app.add_option("--save-every", a->save_every, "write checkpoint-STEP/ every N steps (0: never)")
      ->check(at_least(0))
      ->group(output);
  app.add_option("--log-every", a->log_every, "metrics.jsonl line every N steps (0: none)")
      ->check(at_least(0))
      ->group(output);
  app.add_flag("--json", a->json, "print a JSON summary as the last line")->group(output);
  app.add_option("--config", a->config,
                 "YAML run config: flag names (without --) to values; flags given win")
      ->type_name("FILE")
      ->group("Runtime");
  return [a]() { return run_train(*a); };
}

PEFT_COMMAND("train", "fine-tune a model with LoRA or in full", setup_train);

}  // namespace
}  // namespace peft::cli
