// peft train: fine-tunes a model on a data file with a PEFT method (peft/registry.cpp) or in
// full, writing the adapter (PEFT layout) or the model folder, metrics.jsonl, loss.svg and
// checkpoints to --out.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/setup.h"
#include "cli/validate.h"
#include "core/interrupt.h"
#include "dist/comm.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "models/memory.h"
#include "models/registry.h"
#include "objectives/objective.h"
#include "peft/method.h"
#include "train/data.h"
#include "train/trainer.h"

namespace peft::cli {
namespace {
namespace fs = std::filesystem;

struct TrainArgs {
  std::string model, data, out, method, config, task, eval_data, resume, adapter, base_dtype,
      scheduler = "linear";
  int64_t epochs = 1, max_steps = 0, batch_size = 4, grad_accum = 1, max_len = 512,
          warmup_steps = 0, eval_every = 0, save_every = 0, log_every = 1;
  float lr = 2e-4f, weight_decay = 0.0f, clip_grad = 1.0f;
  double allreduce_bucket_mb = double(kOverlapBucketFloats) * 4 / (1 << 20);
  uint64_t seed = 42;
  bool no_shuffle = false, overwrite = false, packing = false, json = false,
       shard_optimizer = false, accept_changes = false;
  std::string allreduce_dtype = "f32", allreduce_overlap = "auto";
  ObjectiveConfig objective;
  // Method flags (the registry's, each name once): the text of those given, and switches.
  std::map<std::string, std::string> method_text;
  std::map<std::string, bool> method_switch;
  std::vector<std::pair<std::string, CLI::Option*>> method_options;
  CLI::Option* method_option = nullptr;
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

// What peft train writes into --out (and only this is removed by --overwrite): the adapter
// files, metrics.jsonl, loss.svg, and checkpoint-N/ folders holding a trainer_state.json (or a
// checkpoint-N.partial/ an interrupted save left). Files peft did not write stay.
constexpr const char* kLockName = ".peft.lock";

bool is_checkpoint_name(const std::string& name) {
  const std::string prefix = "checkpoint-";
  if (name.rfind(prefix, 0) != 0) return false;
  std::string rest = name.substr(prefix.size());
  if (rest.ends_with(".partial")) rest.resize(rest.size() - 8);
  return !rest.empty() &&
         std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void remove_previous_outputs(const std::string& out) {
  for (const fs::directory_entry& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && is_checkpoint_name(name) &&
        (name.ends_with(".partial") || fs::exists(e.path() / "trainer_state.json")))
      fs::remove_all(e.path());
    else if (e.is_regular_file() &&
             (name == "metrics.jsonl" || name == "loss.svg" || name == "adapter_config.json" ||
              name == "adapter_model.safetensors" || name == "prompt_encoder.safetensors"))
      fs::remove(e.path());
  }
}

// Holds --out/.peft.lock (flock) for the life of the process: a second run into the same folder
// is refused instead of interleaving its files with ours.
void lock_out_dir(const std::string& out) {
  const std::string path = join_path(out, kLockName);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("--out {}: cannot create {}: {}", out, path, std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0)
    fail("--out {}: another peft run is writing to this folder (it holds {})", out, path);
  // Kept open (and locked) until the process exits.
}

// --out must be new or empty, unless --overwrite, or --resume from a checkpoint inside it. Checked
// first (`create` false: nothing is written), then created and locked once the model and the data
// have been read without error.
void prepare_out_dir(const TrainArgs& a, bool create) {
  if (fs::exists(a.out) && !fs::is_directory(a.out))
    fail("--out {}: exists and is not a folder", a.out);
  bool non_empty = false;
  if (fs::exists(a.out))
    for (const fs::directory_entry& e : fs::directory_iterator(a.out))
      non_empty |= e.path().filename() != kLockName;
  const bool resuming_inside =
      !a.resume.empty() &&
      fs::weakly_canonical(a.resume).string().rfind(fs::weakly_canonical(a.out).string(), 0) == 0;
  if (non_empty && !a.overwrite && !resuming_inside)
    fail(
        "--out {}: folder is not empty (use --overwrite to replace it, or --resume a checkpoint "
        "in it)",
        a.out);
  if (!create) return;
  fs::create_directories(a.out);
  lock_out_dir(a.out);
  // --overwrite replaces the previous run's outputs; resuming keeps its checkpoints.
  if (a.overwrite && !resuming_inside) remove_previous_outputs(a.out);
}

// 64-bit FNV-1a of a file's bytes: resume compares data files by contents.
std::string content_hash(const std::string& path) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char c : read_text_file(path)) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", h);
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
  // The methods: --method's registry rows (a comma list stacks them), or with --resume /
  // --adapter the ones the folder holds (one adapter, or a stack of them).
  const std::string source = !a.resume.empty() ? a.resume : a.adapter;
  const bool full = a.method == "full";
  const std::map<std::string, std::string> given = given_method_flags(a);
  if (full && !given.empty())
    fail("--{}: method flags do not apply to --method full", given.begin()->first);
  if (!full && a.method.find(',') != std::string::npos) {
    std::stringstream names(a.method);
    for (std::string n; std::getline(names, n, ',');)
      if (n == "full")
        fail("--method {}: full fine-tuning cannot be stacked with a method", a.method);
  }
  // No --method: the registry's first row (LoRA), or the folder's methods.
  std::vector<const MethodInfo*> stack;
  if (!full)
    stack = parse_method_list(a.method.empty() ? method_registry().front().name : a.method);
  std::vector<std::string> folders;  // the adapter folders continued from, one per method
  std::vector<nlohmann::json> configs;
  if (!full && !source.empty()) {
    folders = adapter_folders(source);
    std::vector<const MethodInfo*> held;
    for (const std::string& f : folders) {
      configs.emplace_back();
      held.push_back(&method_of_adapter(f, &configs.back()));
    }
    if (a.method_option->count() > 0) {
      bool same = held.size() == stack.size();
      for (size_t i = 0; same && i < held.size(); ++i)
        same = held[i]->peft_type == stack[i]->peft_type;
      if (!same) fail("--method {}: {} holds {}", a.method, source, stack_label(held));
    } else {
      stack = held;
    }
  } else if (!full) {
    configs = method_configs_from_flags(stack, given);
  }
  const std::string method_label = full ? "full" : stack_label(stack);
  // Under mpirun rank 0 alone writes (the others need --out on no shared disk).
  const bool root = dist::is_root();
  if (root) prepare_out_dir(a, false);
  if (dist::size() == 1) install_interrupt_handler();  // Ctrl-C: finish the step, checkpoint
  const bool human = root && (stderr_is_terminal() || !a.json);
  double memory_estimate_mb = 0;
  {
    // The memory guard (models/memory.h), before anything is allocated. The trainable count is
    // the whole model for --method full; for a method it is small beside the activations.
    const HFConfig config = load_hf_config(a.model);
    MemoryPlan plan;
    const DType base =
        full ? DType::F32
             : (a.base_dtype.empty() ? stored_dtype_of(config) : dtype_from_name(a.base_dtype));
    plan.weight_bytes_per_param = bytes_per_param(base);
    if (full) plan.trainable_params = config_parameter_count(config);
    plan.batch = a.batch_size;
    plan.tokens = std::min(a.max_len, config.max_position_embeddings);
    const MemoryEstimate estimate = estimate_memory(config, plan);
    check_memory(estimate, "training " + a.model);
    memory_estimate_mb = estimate.total() / (1024.0 * 1024.0);
  }
  LoadedModel loaded = load_model_folder(a.model, full ? "f32" : a.base_dtype);
  Model& model = *loaded.model;
  const std::string task = a.task.empty() ? default_objective(model) : a.task;
  const ObjectiveInfo* task_info = find_objective(task);
  if (!task_info) fail("--task {}: expected one of {}", task, objective_names());
  ObjectiveConfig objective_config = a.objective;
  objective_config.seed = a.seed;
  objective_config.max_len = a.max_len;
  std::unique_ptr<Objective> objective =
      task_info->create({&model, loaded.tokenizer.get(), a.model}, objective_config);
  std::vector<Example> train_examples = objective->read(a.data, false);
  std::vector<Example> eval_examples;
  if (!a.eval_data.empty()) eval_examples = objective->read(a.eval_data, true);
  if (task == "causal-lm") {  // records with no target, or longer than the model's positions
    const int64_t max_positions = model.config().max_position_embeddings;
    check_records_usable(train_examples, a.data, true, max_positions, a.max_len);
    if (!a.eval_data.empty())
      check_records_usable(eval_examples, a.eval_data, true, max_positions, a.max_len);
  }
  if (root) prepare_out_dir(a, true);  // the inputs are valid: now --out is created and locked

  BatchingOptions batching;
  batching.batch_size = a.batch_size;
  batching.max_len = a.max_len;
  batching.packing = a.packing;
  batching.shuffle = !a.no_shuffle;
  batching.shifted = objective->shifted();
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
  if (root && train_data.truncated() > 0)  // a warning: stderr even with --json
    std::fprintf(stderr,
                 "note: %lld training records were longer than --max-len %lld and were truncated\n",
                 (long long)train_data.truncated(), (long long)a.max_len);

  // Each rank draws its dropout masks from its own stream (rank 0's is a single process's).
  Rng init_rng(a.seed, 1), dropout_rng(a.seed, 2 + (uint64_t(dist::rank()) << 32));
  MethodSet methods(model);
  ParamStore full_params;
  SaveAdapter save;
  std::string written = "config.json + model.safetensors";  // what save() writes (for the note)
  if (!full) {
    written.clear();
    if (!folders.empty()) check_flags_agree_with_folders(model, stack, configs, folders, given);
    for (size_t i = 0; i < stack.size(); ++i) {
      configs[i]["base_model_name_or_path"] = a.model;
      methods.add(
          *stack[i], configs[i],
          folders.empty() ? "the --method flags" : join_path(folders[i], "adapter_config.json"),
          folders.empty() ? "" : folders[i]);
    }
    objective->declare(methods.params());  // a seq-cls head trains beside the method(s)
    methods.allocate();
    if (folders.empty()) {
      methods.initialize(init_rng, loaded.tokenizer.get());
    } else {
      for (size_t i = 0; i < folders.size(); ++i) {
        methods.methods()[i]->load(folders[i]);
        check_finite_parameters(methods.params(), i == 0 ? "" : fmt::format("m{}/", i), folders[i]);
      }
    }
    save = [&](const std::string& dir) { methods.save(dir); };
    if (stack.size() == 1) {
      for (const std::string& f : methods.methods()[0]->saved_files())
        written += (written.empty() ? "" : " + ") + f;
    } else {  // one sub-folder per method and the list of them
      for (const MethodInfo* m : stack) written += m->name + "/ + ";
      written += kStackFile;
    }
  } else {
    objective->declare(full_params);
    model.make_trainable(full_params);
    save = [&](const std::string& dir) { save_model_folder(dir, model, full_params, a.model); };
  }
  ParamStore& params = full ? full_params : methods.params();
  // The objective's own parameters (a seq-cls head) live in the adapter folder, in a stack the
  // first method's (PEFT's modules_to_save of that adapter).
  if (!full && !source.empty())
    objective->load(params, folders.front());
  else
    objective->initialize(params, init_rng);
  save = [&, save_method = save](const std::string& dir) {
    save_method(dir);
    objective->save(params, full ? dir : adapter_folders(dir).front());
  };
  ModelHooks* hooks = methods.hooks();

  // The trainer says whether a batch is a training step or an evaluation; the ForwardContext
  // carries that (dropout) to the model and every method.
  LossFunction loss = [&](const Batch& b, float normaliser, bool training) {
    return objective->loss(b, normaliser,
                           {.hooks = hooks, .training = training, .dropout_rng = &dropout_rng});
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
  o.shard_optimizer = a.shard_optimizer;
  o.allreduce_bf16 = a.allreduce_dtype == "bf16";
  o.allreduce_overlap = a.allreduce_overlap == "on"    ? AllreduceOverlap::On
                        : a.allreduce_overlap == "off" ? AllreduceOverlap::Off
                                                       : AllreduceOverlap::Auto;
  o.allreduce_bucket_floats =
      std::max<int64_t>(1, int64_t(a.allreduce_bucket_mb * double(1 << 20) / 4));
  // Settings a resumed run must share with its checkpoint (the method's own come from the
  // checkpoint folder itself).
  o.run_settings = {{"--lr", fmt::format("{}", a.lr)},
                    {"--scheduler", a.scheduler},
                    {"--warmup-steps", std::to_string(a.warmup_steps)},
                    {"--weight-decay", fmt::format("{}", a.weight_decay)},
                    {"--clip-grad", fmt::format("{}", a.clip_grad)},
                    {"--batch-size", std::to_string(a.batch_size)},
                    {"--grad-accum", std::to_string(a.grad_accum)},
                    {"--max-len", std::to_string(a.max_len)},
                    {"--packing", a.packing ? "true" : "false"},
                    {"--no-shuffle", a.no_shuffle ? "true" : "false"},
                    {"--epochs", std::to_string(a.epochs)},
                    {"--max-steps", std::to_string(a.max_steps)},
                    {"--base-dtype", a.base_dtype.empty() ? "as stored" : a.base_dtype},
                    {"--data", content_hash(a.data)}};
  if (!a.eval_data.empty()) o.run_settings["--eval-data"] = content_hash(a.eval_data);
  o.accept_changes = a.accept_changes;
  o.plot_title = fmt::format("{} fine-tune of {} ({})", method_label, folder_name(a.model),
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
        a.model.c_str(), method_label.c_str(), train_data.num_examples(),
        (long long)trainer.total_steps(), (long long)trainable,
        100.0 * double(trainable) / double(std::max<int64_t>(1, model.parameter_count())),
        (long long)model.parameter_count());
  if (human && dist::size() > 1)
    std::fprintf(stderr, "data-parallel over %d ranks (%s): each takes 1/%d of every batch%s\n",
                 dist::size(), dist::mpi_library().c_str(), dist::size(),
                 a.shard_optimizer ? "; AdamW state sharded (ZeRO-1)" : "");
  const TrainResult result = trainer.train();  // writes the final adapter into --out (rank 0)
  if (!root) return 0;
  nlohmann::ordered_json out;
  out["steps"] = result.steps;
  out["final_loss"] = result.final_loss;
  out["eval_loss"] = result.eval_loss ? nlohmann::json(*result.eval_loss) : nlohmann::json(nullptr);
  out["method"] = method_label;
  out["trainable_params"] = trainable;
  out["tokens_per_s"] = result.tokens_per_s;
  out["peak_rss_mb"] = peak_rss_mb();
  out["memory_estimate_mb"] = memory_estimate_mb;  // the guard's estimate, for comparison
  out["truncated_records"] = train_data.truncated();
  out["ranks"] = result.ranks;
  out["allreduce_share"] = result.seconds > 0 ? result.allreduce_seconds / result.seconds : 0.0;
  out["rank_wait_share"] = result.seconds > 0 ? result.wait_seconds / result.seconds : 0.0;
  out["allreduce_overlap"] = result.allreduce_overlapped;
  out["task"] = task;
  if (eval_data) {  // the objective's own metrics of the final model (accuracy on masked tokens
                    // or on records)
    const EvalMetrics m = objective->evaluate(*eval_data, hooks);
    out["eval_accuracy"] = m.accuracy;
    if (m.classification()) out["eval_macro_f1"] = macro_f1(m.confusion);
    if (human)
      std::fprintf(stderr, "eval: loss %.6f  accuracy %.4f%s\n", m.loss, m.accuracy,
                   m.classification()
                       ? fmt::format("  macro-F1 {:.4f}", macro_f1(m.confusion)).c_str()
                       : "");
  }
  if (human)
    std::fprintf(stderr, "wrote %s: %s, metrics.jsonl, loss.svg%s (%.1f s)\n", a.out.c_str(),
                 written.c_str(), a.save_every > 0 ? ", checkpoint-*/" : "", result.seconds);
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
  app.add_option("--task", a->task,
                 fmt::format("training objective: {} (default: mlm for BERT, causal-lm for "
                             "decoders)",
                             objective_names()))
      ->group(data);
  app.add_option("--pattern", a->objective.patterns,
                 "PET pattern with {text}, {text_b}, {mask}, e.g. \"{text} It was {mask}.\"")
      ->type_name("TEXT")
      ->group(data);
  app.add_option("--verbalizer", a->objective.verbalizer,
                 "PET verbalizer: JSON label -> word(s), inline or a file")
      ->type_name("JSON|FILE")
      ->group(data);
  app.add_option("--labels", a->objective.labels,
                 "seq-cls class names in order (default: the sorted labels of --data)")
      ->delimiter(',')
      ->type_name("A,B,...")
      ->group(data);
  app.add_option("--pet-mlm-weight", a->objective.pet_mlm_weight,
                 "pet: PET's α, loss = (1 - α)·CE + α·MLM on --unlabeled-data (PET uses 1e-4)")
      ->check(number_in({.lo = 0, .hi = 1}))
      ->group(data);
  app.add_option("--unlabeled-data", a->objective.unlabeled_data,
                 "pet: unlabeled records for the auxiliary MLM loss (texts, or input_ids/labels)")
      ->type_name("FILE")
      ->group(data);
  app.add_option("--distill-temperature", a->objective.distill_temperature,
                 "records with soft_labels (peft classify --distill-out): KL at this temperature")
      ->check(number_in({.lo = 0, .hi = {}, .lo_open = true}))
      ->group(data);
  app.add_option("--mlm-probability", a->objective.mask_probability,
                 "mlm: share of tokens selected for masking")
      ->check(number_in({.lo = 0, .hi = 1, .lo_open = true}))
      ->group(data);
  app.add_flag("--whole-word-mask", a->objective.whole_word_mask,
               "mlm: select whole words (all their pieces) instead of tokens")
      ->group(data);
  app.add_option("--max-len", a->max_len, "truncate records to this many tokens")
      ->check(at_least(1))
      ->group(data);
  app.add_flag("--packing", a->packing, "pack short records into rows of --max-len")->group(data);
  app.add_flag("--no-shuffle", a->no_shuffle, "keep the data order")->group(data);
  a->method_option =
      app.add_option("--method", a->method,
                     fmt::format("{} or full; several, comma-separated (A,B), train stacked, e.g. "
                                 "LoRA with a prompt-learning method, each saved in its own "
                                 "sub-folder (with --adapter / --resume: the folder's methods)",
                                 method_names()))
          ->default_str(method_registry().front().name)
          ->group(method);
  app.add_option("--adapter", a->adapter,
                 "continue training an existing adapter folder (any method; PEFT's or ours; a "
                 "stacked run's folder continues the whole stack); method flags given must agree "
                 "with its config")
      ->type_name("DIR")
      ->group(method);
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
  app.add_flag("--resume-accept-changes", a->accept_changes,
               "resume even though --lr, the data or another setting differs from the checkpoint's")
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
  app.add_flag("--shard-optimizer", a->shard_optimizer,
               "under mpirun: each rank keeps the AdamW state of 1/N of the parameters (ZeRO-1)")
      ->group("Runtime");
  app.add_option("--allreduce-dtype", a->allreduce_dtype,
                 "under mpirun: sum gradients in f32 or bf16 (half the traffic)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->group("Runtime");
  app.add_option("--allreduce-overlap", a->allreduce_overlap,
                 "under mpirun: sum gradients in buckets during backward (on), in one all-reduce "
                 "after it (off), or on from 16M trainable parameters (auto)")
      ->check(CLI::IsMember({"on", "off", "auto"}))
      ->group("Runtime");
  app.add_option("--allreduce-bucket-mb", a->allreduce_bucket_mb,
                 "under mpirun, overlapped: gradient bucket size in MiB")
      ->check(positive())
      ->capture_default_str()
      ->group("Runtime");
  app.add_option("--config", a->config,
                 "YAML run config: flag names (without --) to values; flags given win")
      ->type_name("FILE")
      ->group("Runtime");
  // Every method's flags (peft/registry.cpp), each name once; they become the method's JSON.
  for (const MethodFlag& f : all_method_flags()) {
    CLI::Option* opt = f.type == MethodFlag::Type::Bool
                           ? app.add_flag("--" + f.name, a->method_switch[f.name], f.help)
                           : app.add_option("--" + f.name, a->method_text[f.name], f.help);
    if (f.min || f.max) {
      NumberRange range;
      range.lo = f.min, range.hi = f.max, range.lo_open = f.min_open, range.hi_open = f.max_open;
      range.integer = f.type == MethodFlag::Type::Int;
      opt->check(number_in(range));
    }
    if (!f.choices.empty()) opt->check(CLI::IsMember(f.choices, CLI::ignore_case));
    using T = MethodFlag::Type;
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
