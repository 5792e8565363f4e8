// Training through the public API: Model::train (the attached adapters) and train(model_dir, ...)
// (`peft train`: methods created, continued or resumed from folders, full fine-tuning, output
// folder rules), both over one wiring of objective, data and trainer.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/impl.h"
#include "dist/comm.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "models/memory.h"
#include "models/registry.h"
#include "objectives/objective.h"
#include "train/data.h"
#include "train/trainer.h"

namespace peft::api {
namespace {
namespace fs = std::filesystem;

// What a run trains, as train(model_dir, ...) resolved it; none of it for the attached adapters.
struct Plan {
  bool attached = false;  // Model::train: impl.methods as they are
  bool full = false;
  std::vector<const MethodInfo*> stack;
  std::vector<nlohmann::json> configs;       // one per method of the stack
  std::vector<std::string> folders;          // the adapter folders continued from, one per method
  std::map<std::string, std::string> given;  // the method settings given
  std::string label;                         // "lora", "lora+prefix", "full"
  double memory_estimate_mb = 0;
  std::function<void()> inputs_valid;  // called once the model and the data have been read
};

// What a run writes into out_dir (and only this is removed by `overwrite`): the adapter files,
// metrics.jsonl, loss.svg, and checkpoint-N/ folders holding a trainer_state.json (or a
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

// Holds OUT/.peft.lock (flock) for the life of the process: a second run into the same folder
// is refused instead of interleaving its files with ours.
void lock_out_dir(const std::string& out) {
  const std::string path = join_path(out, kLockName);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("--out {}: cannot create {}: {}", out, path, std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0)
    fail("--out {}: another peft run is writing to this folder (it holds {})", out, path);
  // Kept open (and locked) until the process exits.
}

// out_dir must be new or empty, unless overwrite, or resume from a checkpoint inside it. Checked
// first (`create` false: nothing is written), then created and locked once the model and the data
// have been read without error.
void prepare_out_dir(const TrainOptions& a, bool create) {
  if (fs::exists(a.out_dir) && !fs::is_directory(a.out_dir))
    fail("--out {}: exists and is not a folder", a.out_dir);
  bool non_empty = false;
  if (fs::exists(a.out_dir))
    for (const fs::directory_entry& e : fs::directory_iterator(a.out_dir))
      non_empty |= e.path().filename() != kLockName;
  const bool resuming_inside =
      !a.resume.empty() && fs::weakly_canonical(a.resume).string().rfind(
                               fs::weakly_canonical(a.out_dir).string(), 0) == 0;
  if (non_empty && !a.overwrite && !resuming_inside)
    fail(
        "--out {}: folder is not empty (use --overwrite to replace it, or --resume a checkpoint "
        "in it)",
        a.out_dir);
  if (!create) return;
  fs::create_directories(a.out_dir);
  lock_out_dir(a.out_dir);
  // overwrite replaces the previous run's outputs; resuming keeps its checkpoints.
  if (a.overwrite && !resuming_inside) remove_previous_outputs(a.out_dir);
}

// 64-bit FNV-1a of a file's bytes: resume compares data files by contents.
std::string content_hash(const std::string& path) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char c : read_text_file(path)) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir) {
  for (const char* f :
       {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model",
        "vocab.txt", "special_tokens_map.json", "generation_config.json"})
    if (file_exists(join_path(from_dir, f)))
      write_file_atomic(join_path(to_dir, f), read_text_file(join_path(from_dir, f)));
}

// A full fine-tune's output: a Hugging Face model folder with the trained weights (f32).
void save_model_folder(const std::string& dir, const peft::Model& model, const ParamStore& params,
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

// The one wiring of a run: objective, data, parameters, trainer, final evaluation.
TrainResult run(Model::Impl& impl, const TrainOptions& a, const TrainCallbacks& cb, Plan& plan) {
  peft::Model& model = *impl.model;
  if (a.gradient_checkpointing && !model.is_causal_lm())
    fail("--gradient-checkpointing is implemented for decoders; {} is a masked LM",
         model.config().model_type);
  const std::string task = a.task.empty() ? default_objective(model) : a.task;
  const ObjectiveInfo* task_info = find_objective(task);
  if (!task_info) fail("--task {}: expected one of {}", task, peft::objective_names());
  ObjectiveConfig objective_config;
  objective_config.patterns = a.patterns;
  objective_config.verbalizer = a.verbalizer;
  objective_config.labels = a.labels;
  objective_config.mask_probability = a.mlm_probability;
  objective_config.whole_word_mask = a.whole_word_mask;
  objective_config.pet_mlm_weight = a.pet_mlm_weight;
  objective_config.unlabeled_data = a.unlabeled_data;
  objective_config.distill_temperature = a.distill_temperature;
  objective_config.seed = a.seed;
  objective_config.max_len = a.max_len;
  std::unique_ptr<Objective> objective =
      task_info->create({&model, impl.tokenizer.get(), impl.dir}, objective_config);
  if (plan.attached) {
    ParamStore probe;  // an objective with parameters of its own (seq-cls's head)
    objective->declare(probe);
    if (!probe.entries().empty())
      fail("task \"{}\" trains parameters beside the adapter; use peft::api::train(model_dir, ...)",
           task);
  }
  std::vector<Example> train_examples = objective->read(a.data, false);
  std::vector<Example> eval_examples;
  if (!a.eval_data.empty()) eval_examples = objective->read(a.eval_data, true);
  if (task == "causal-lm") {  // records with no target, or longer than the model's positions
    const int64_t max_positions = model.config().max_position_embeddings;
    check_records_usable(train_examples, a.data, true, max_positions, a.max_len);
    if (!a.eval_data.empty())
      check_records_usable(eval_examples, a.eval_data, true, max_positions, a.max_len);
  }
  if (plan.inputs_valid) plan.inputs_valid();

  BatchingOptions batching;
  batching.batch_size = a.batch_size;
  batching.max_len = a.max_len;
  batching.packing = a.packing;
  batching.shuffle = a.shuffle;
  batching.shifted = objective->shifted();
  batching.pad_id = impl.pad_id();
  const size_t train_records = train_examples.size();
  BatchBuilder train_data(std::move(train_examples), batching);
  BatchingOptions eval_batching = batching;
  eval_batching.shuffle = false;
  eval_batching.packing = false;
  std::unique_ptr<BatchBuilder> eval_data;
  if (!a.eval_data.empty())
    eval_data = std::make_unique<BatchBuilder>(std::move(eval_examples), eval_batching);
  if (cb.on_data)
    cb.on_data({.records = int64_t(train_records),
                .rows = int64_t(train_data.num_examples()),
                .truncated_records = train_data.truncated()});

  // Each rank draws its dropout masks from its own stream (rank 0's is a single process's).
  Rng init_rng(a.seed, 1), dropout_rng(a.seed, 2 + (uint64_t(dist::rank()) << 32));
  ParamStore full_params;
  SaveAdapter save;
  std::string written = "config.json + model.safetensors";  // what save() writes
  if (plan.full) {
    objective->declare(full_params);
    model.make_trainable(full_params);
    save = [&](const std::string& dir) {
      save_model_folder(dir, model, full_params, impl.dir);
      objective->save(full_params, dir);
    };
    objective->initialize(full_params, init_rng);
  } else {
    if (!plan.attached) {
      if (!plan.folders.empty())
        check_flags_agree_with_folders(model, plan.stack, plan.configs, plan.folders, plan.given);
      auto methods = std::make_unique<MethodSet>(model);
      for (size_t i = 0; i < plan.stack.size(); ++i) {
        plan.configs[i]["base_model_name_or_path"] = impl.dir;
        methods->add(*plan.stack[i], plan.configs[i],
                     plan.folders.empty() ? "the --method flags"
                                          : join_path(plan.folders[i], "adapter_config.json"),
                     plan.folders.empty() ? "" : plan.folders[i]);
      }
      objective->declare(methods->params());  // a seq-cls head trains beside the method(s)
      methods->allocate();
      if (plan.folders.empty()) {
        methods->initialize(init_rng, impl.tokenizer.get());
      } else {
        for (size_t i = 0; i < plan.folders.size(); ++i) {
          methods->methods()[i]->load(plan.folders[i]);
          check_finite_parameters(methods->params(), i == 0 ? "" : fmt::format("m{}/", i),
                                  plan.folders[i]);
        }
      }
      // The objective's own parameters (a seq-cls head) live in the adapter folder, in a stack
      // the first method's (PEFT's modules_to_save of that adapter).
      if (!plan.folders.empty())
        objective->load(methods->params(), plan.folders.front());
      else
        objective->initialize(methods->params(), init_rng);
      impl.methods = std::move(methods);
      impl.adapter_dirs.assign(plan.stack.size(), "");
    }
    MethodSet& methods = *impl.methods;
    written.clear();
    if (methods.methods().size() == 1) {
      for (const std::string& f : methods.methods()[0]->saved_files())
        written += (written.empty() ? "" : " + ") + f;
    } else {  // one sub-folder per method and the list of them
      for (const MethodInfo* m : plan.stack) written += m->name + "/ + ";
      written += kStackFile;
    }
    save = [&](const std::string& dir) {
      methods.save(dir);
      objective->save(methods.params(), adapter_folders(dir).front());
    };
  }
  ParamStore& params = plan.full ? full_params : impl.methods->params();
  ModelHooks* hooks = impl.hooks();

  // The trainer says whether a batch is a training step or an evaluation; the ForwardContext
  // carries that (dropout) to the model and every method.
  LossFunction loss = [&](const Batch& b, float normaliser, bool training) {
    return objective->loss(b, normaliser,
                           {.hooks = hooks,
                            .training = training,
                            .dropout_rng = &dropout_rng,
                            .recompute_layers = training && a.gradient_checkpointing});
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
  o.log_every = a.out_dir.empty() ? 0 : a.log_every;
  o.out_dir = a.out_dir;
  o.progress = a.progress;
  o.shard_optimizer = a.shard_optimizer;
  if (a.allreduce_dtype != "f32" && a.allreduce_dtype != "bf16")
    fail("--allreduce-dtype {}: expected f32 or bf16", a.allreduce_dtype);
  o.allreduce_bf16 = a.allreduce_dtype == "bf16";
  if (a.allreduce_overlap != "on" && a.allreduce_overlap != "off" && a.allreduce_overlap != "auto")
    fail("--allreduce-overlap {}: expected on, off or auto", a.allreduce_overlap);
  o.allreduce_overlap = a.allreduce_overlap == "on"    ? AllreduceOverlap::On
                        : a.allreduce_overlap == "off" ? AllreduceOverlap::Off
                                                       : AllreduceOverlap::Auto;
  // A recomputed layer writes its parameters' gradients from one closure that declared none of
  // them, so the overlapped all-reduce could not know when they are final.
  if (a.gradient_checkpointing) {
    if (o.allreduce_overlap == AllreduceOverlap::On)
      fail("--gradient-checkpointing cannot run with --allreduce-overlap on (use off or auto)");
    o.allreduce_overlap = AllreduceOverlap::Off;
  }
  if (!(a.allreduce_bucket_mb > 0))
    fail("--allreduce-bucket-mb {}: must be > 0", a.allreduce_bucket_mb);
  o.allreduce_bucket_floats =
      std::max<int64_t>(1, int64_t(a.allreduce_bucket_mb * double(1 << 20) / 4));
  // Settings a resumed run must share with its checkpoint (the method's own come from the
  // checkpoint folder itself), named by `peft train`'s flags.
  o.run_settings = {{"--lr", fmt::format("{}", a.lr)},
                    {"--scheduler", a.scheduler},
                    {"--warmup-steps", std::to_string(a.warmup_steps)},
                    {"--weight-decay", fmt::format("{}", a.weight_decay)},
                    {"--clip-grad", fmt::format("{}", a.clip_grad)},
                    {"--batch-size", std::to_string(a.batch_size)},
                    {"--grad-accum", std::to_string(a.grad_accum)},
                    {"--max-len", std::to_string(a.max_len)},
                    {"--packing", a.packing ? "true" : "false"},
                    {"--no-shuffle", a.shuffle ? "false" : "true"},
                    {"--epochs", std::to_string(a.epochs)},
                    {"--max-steps", std::to_string(a.max_steps)},
                    {"--base-dtype", a.base_dtype.empty() ? "as stored" : a.base_dtype},
                    {"--data", content_hash(a.data)}};
  if (!a.eval_data.empty()) o.run_settings["--eval-data"] = content_hash(a.eval_data);
  o.accept_changes = a.resume_accept_changes;
  o.plot_title = fmt::format("{} fine-tune of {} ({})", plan.label, folder_name(impl.dir),
                             model.config().model_type);
  if (cb.on_step)
    o.on_step = [&](const StepReport& r) {
      StepInfo s{r.step, r.total_steps, r.epoch,        r.loss,
                 r.lr,   r.grad_norm,   r.tokens_per_s, r.eval_loss};
      return cb.on_step(s);
    };
  Trainer trainer(params, train_data, eval_data.get(), loss, save, o);
  trainer.track_rng(&dropout_rng);
  if (!a.resume.empty()) trainer.resume_from(a.resume);

  int64_t trainable = 0;
  for (const auto& e : params.entries()) trainable += e.numel;
  if (cb.on_start) {
    TrainStart s;
    s.method = plan.label;
    s.task = task;
    s.records = int64_t(train_records);
    s.rows = int64_t(train_data.num_examples());
    s.truncated_records = train_data.truncated();
    s.total_steps = trainer.total_steps();
    s.trainable_params = trainable;
    s.model_params = model.parameter_count();
    s.ranks = dist::size();
    cb.on_start(s);
  }
  const peft::TrainResult r = trainer.train();  // writes the final adapter into out_dir (rank 0)
  TrainResult out;
  out.steps = r.steps;
  out.final_loss = r.final_loss;
  out.eval_loss = r.eval_loss;
  out.trainable_params = trainable;
  out.tokens_per_s = r.tokens_per_s;
  out.seconds = r.seconds;
  out.cancelled = r.stopped;
  out.method = plan.label;
  out.task = task;
  out.written = written;
  out.memory_estimate_mb = plan.memory_estimate_mb;
  out.truncated_records = train_data.truncated();
  out.ranks = r.ranks;
  out.allreduce_seconds = r.allreduce_seconds;
  out.wait_seconds = r.wait_seconds;
  out.allreduce_overlapped = r.allreduce_overlapped;
  if (eval_data && dist::is_root()) {  // the objective's own metrics of the final model
    const EvalMetrics m = objective->evaluate(*eval_data, hooks);
    out.eval_objective_loss = m.loss;
    out.eval_accuracy = m.accuracy;
    if (m.classification()) out.eval_macro_f1 = macro_f1(m.confusion);
  }
  return out;
}

}  // namespace

TrainResult Model::train(const TrainOptions& options, const StepCallback& on_step) {
  TrainCallbacks cb;
  cb.on_step = on_step;
  return train(options, cb);
}

TrainResult Model::train(const TrainOptions& options, const TrainCallbacks& callbacks) {
  return guarded([&] {
    if (!impl_->methods) fail("train: no adapter is attached (create_adapter or load_adapters)");
    if (!options.method.empty() || !options.adapter.empty() || !options.base_dtype.empty())
      fail(
          "train: method, adapter and base_dtype choose what peft::api::train(model_dir, ...) "
          "trains; Model::train trains the attached adapters");
    Plan plan;
    plan.attached = true;
    for (const AdapterInfo& info : adapters()) {
      plan.stack.push_back(find_method(info.method));
      plan.label += (plan.label.empty() ? "" : "+") + info.method;
    }
    plan.inputs_valid = [&] {
      if (!options.out_dir.empty()) fs::create_directories(options.out_dir);
    };
    return run(*impl_, options, callbacks, plan);
  });
}

TrainResult train(const std::string& model_dir, const TrainOptions& a, const TrainCallbacks& cb) {
  return guarded([&] {
    // The methods: `method`'s registry rows (a comma list stacks them), or with resume /
    // adapter the ones the folder holds (one adapter, or a stack of them).
    const std::string source = !a.resume.empty() ? a.resume : a.adapter;
    Plan plan;
    plan.full = a.method == "full";
    plan.given = a.method_settings;
    const std::map<std::string, std::string>& given = plan.given;
    if (plan.full && !given.empty())
      fail("--{}: method flags do not apply to --method full", given.begin()->first);
    if (!plan.full && a.method.find(',') != std::string::npos) {
      std::stringstream names(a.method);
      for (std::string n; std::getline(names, n, ',');)
        if (n == "full")
          fail("--method {}: full fine-tuning cannot be stacked with a method", a.method);
    }
    // No method: the registry's first row (LoRA), or the folder's methods.
    if (!plan.full)
      plan.stack = parse_method_list(a.method.empty() ? method_registry().front().name : a.method);
    if (!plan.full && !source.empty()) {
      plan.folders = adapter_folders(source);
      std::vector<const MethodInfo*> held;
      for (const std::string& f : plan.folders) {
        plan.configs.emplace_back();
        held.push_back(&method_of_adapter(f, &plan.configs.back()));
      }
      if (!a.method.empty()) {
        bool same = held.size() == plan.stack.size();
        for (size_t i = 0; same && i < held.size(); ++i)
          same = held[i]->peft_type == plan.stack[i]->peft_type;
        if (!same) fail("--method {}: {} holds {}", a.method, source, stack_label(held));
      } else {
        plan.stack = held;
      }
    } else if (!plan.full) {
      plan.configs = method_configs_from_flags(plan.stack, given);
    }
    plan.label = plan.full ? "full" : stack_label(plan.stack);
    // Under mpirun rank 0 alone writes (the others need out_dir on no shared disk).
    const bool root = dist::is_root();
    if (root && !a.out_dir.empty()) prepare_out_dir(a, false);
    {
      // The memory guard (models/memory.h), before anything is allocated. The trainable count
      // is the whole model for full fine-tuning; for a method it is small beside the
      // activations.
      const HFConfig config = load_hf_config(model_dir);
      MemoryPlan memory;
      const DType base = plan.full ? DType::F32
                                   : (a.base_dtype.empty() ? stored_dtype_of(config)
                                                           : dtype_from_name(a.base_dtype));
      memory.weight_bytes_per_param = bytes_per_param(base);
      if (plan.full) memory.trainable_params = config_parameter_count(config);
      memory.batch = a.batch_size;
      memory.tokens = std::min(a.max_len, config.max_position_embeddings);
      memory.recompute_layers = a.gradient_checkpointing;
      const MemoryEstimate estimate = estimate_memory(config, memory);
      check_memory(estimate, "training " + model_dir);
      plan.memory_estimate_mb = estimate.total() / (1024.0 * 1024.0);
    }
    LoadOptions load;
    load.base_dtype = plan.full ? "f32" : a.base_dtype;
    Model model = Model::load(model_dir, load);
    plan.inputs_valid = [&] {  // now out_dir is created and locked
      if (root && !a.out_dir.empty()) prepare_out_dir(a, true);
    };
    return run(*model.impl_, a, cb, plan);
  });
}

}  // namespace peft::api
