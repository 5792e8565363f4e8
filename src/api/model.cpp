// The public C++ API (include/peft/peft.hpp) over the library: every call translates the
// library's errors (peft::Error, internal checks, allocation failures) into peft::api::Error.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "infer/generate.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "models/evaluate.h"
#include "models/registry.h"
#include "objectives/objective.h"
#include "objectives/pet.h"
#include "peft/gguf_export.h"
#include "peft/method.h"
#include "peft/peft.hpp"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/trainer.h"

namespace peft::api {

namespace {

template <typename F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const api::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw api::Error("out of memory");
  } catch (const std::exception& e) {
    throw api::Error(e.what());
  }
}

// Holds back a trailing incomplete UTF-8 sequence (decoded as U+FFFD) until it completes; the
// pieces add up to the decoded text.
class TextStream {
 public:
  explicit TextStream(const Tokenizer& tok) : tok_(tok) {}
  // The new complete text after adding `id` ("" while a character is incomplete).
  std::string add(int32_t id) {
    ids_.push_back(id);
    const std::string text = tok_.decode(ids_, true);
    if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) return "";
    std::string piece = text.size() > emitted_ ? text.substr(emitted_) : "";
    emitted_ = std::max(emitted_, text.size());
    return piece;
  }
  // What is left at the end (an incomplete character, decoded as U+FFFD).
  std::string flush() {
    const std::string text = tok_.decode(ids_, true);
    std::string rest = text.size() > emitted_ ? text.substr(emitted_) : "";
    emitted_ = std::max(emitted_, text.size());
    return rest;
  }
  std::string text() const { return tok_.decode(ids_, true); }

 private:
  const Tokenizer& tok_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;
};

}  // namespace

const char* version() {
  return PEFT_VERSION;
}

std::vector<std::string> method_names() {
  std::vector<std::string> out;
  for (const MethodInfo& m : method_registry()) out.push_back(m.name);
  return out;
}

struct Model::Impl {
  std::string dir;
  std::unique_ptr<peft::Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<MethodSet> methods;
  std::vector<std::string> adapter_dirs;  // where the attached adapters came from ("" = fresh)

  const Tokenizer& tok() const {
    if (!tokenizer) fail("{}: this needs the model's tokenizer files", dir);
    return *tokenizer;
  }
  ModelHooks* hooks() const { return methods ? methods->hooks() : nullptr; }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::string& dir, const LoadOptions& options) {
  return guarded([&] {
    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    peft::LoadOptions o;
    if (!options.base_dtype.empty()) o.base_dtype = dtype_from_name(options.base_dtype);
    impl->model = load_model(dir, o);
    for (const char* f : {"tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt"})
      if (file_exists(join_path(dir, f))) {
        impl->tokenizer = load_tokenizer(dir);
        break;
      }
    return Model(std::move(impl));
  });
}

ModelInfo Model::info() const {
  const HFConfig& c = impl_->model->config();
  ModelInfo i;
  i.model_type = c.model_type;
  i.parameters = impl_->model->parameter_count();
  i.vocab_size = c.vocab_size;
  i.hidden_size = c.hidden_size;
  i.num_layers = c.num_hidden_layers;
  i.num_heads = c.num_attention_heads;
  i.num_kv_heads = c.num_key_value_heads;
  i.causal_lm = impl_->model->is_causal_lm();
  i.has_tokenizer = impl_->tokenizer != nullptr;
  return i;
}

const std::string& Model::dir() const {
  return impl_->dir;
}

std::vector<int32_t> Model::tokenize(const std::string& text, bool add_special_tokens) const {
  return guarded([&] { return impl_->tok().encode(text, add_special_tokens); });
}

std::string Model::detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return guarded([&] { return impl_->tok().decode(ids, skip_special_tokens); });
}

void Model::load_adapters(const std::vector<std::string>& dirs) {
  guarded([&] {
    impl_->methods.reset();
    impl_->adapter_dirs.clear();
    if (dirs.empty()) return;
    auto set = std::make_unique<MethodSet>(*impl_->model);
    set->attach_folders(dirs);
    impl_->methods = std::move(set);
    impl_->adapter_dirs = dirs;
  });
}

void Model::create_adapter(const std::string& method,
                           const std::map<std::string, std::string>& settings, uint64_t seed) {
  guarded([&] {
    const MethodInfo* info = find_method(method);
    if (!info) fail("method \"{}\": expected one of {}", method, peft::method_names());
    nlohmann::json config = method_config_from_flags(*info, settings);
    config["base_model_name_or_path"] = impl_->dir;
    impl_->methods.reset();
    impl_->adapter_dirs.clear();
    auto set = std::make_unique<MethodSet>(*impl_->model);
    Method& m = set->add(*info, config, "the " + method + " settings");
    set->allocate();
    Rng init_rng(seed, 1);  // the stream `peft train` initialises with
    m.initialize(init_rng, impl_->tokenizer.get());
    impl_->methods = std::move(set);
    impl_->adapter_dirs = {""};
  });
}

void Model::save_adapter(const std::string& dir) const {
  guarded([&] {
    if (!impl_->methods) fail("save_adapter: no adapter is attached");
    std::filesystem::create_directories(dir);
    impl_->methods->methods().front()->save(dir);
  });
}

void Model::clear_adapters() {
  impl_->methods.reset();
  impl_->adapter_dirs.clear();
}

std::vector<AdapterInfo> Model::adapters() const {
  std::vector<AdapterInfo> out;
  if (!impl_->methods) return out;
  for (const auto& m : impl_->methods->methods()) {
    AdapterInfo a;
    const nlohmann::json config = m->config_json();
    a.peft_type = config.value("peft_type", std::string());
    for (const MethodInfo& info : method_registry())
      if (info.peft_type == a.peft_type && a.method.empty()) a.method = info.name;
    a.config_json = config.dump(2);
    a.mergeable = m->mergeable();
    out.push_back(std::move(a));
  }
  return out;
}

TrainResult Model::train(const TrainOptions& a, const StepCallback& on_step) {
  return guarded([&] {
    if (!impl_->methods) fail("train: no adapter is attached (create_adapter or load_adapters)");
    peft::Model& model = *impl_->model;
    const std::string task = a.task.empty() ? default_objective(model) : a.task;
    const ObjectiveInfo* task_info = find_objective(task);
    if (!task_info) fail("task \"{}\": expected one of {}", task, objective_names());
    ObjectiveConfig objective_config;
    if (!a.pattern.empty()) objective_config.patterns = {a.pattern};
    objective_config.verbalizer = a.verbalizer;
    objective_config.seed = a.seed;
    objective_config.max_len = a.max_len;
    std::unique_ptr<Objective> objective =
        task_info->create({&model, impl_->tokenizer.get(), impl_->dir}, objective_config);
    ParamStore probe;  // an objective with parameters of its own (seq-cls's head)
    objective->declare(probe);
    if (!probe.entries().empty())
      fail("task \"{}\" trains parameters beside the adapter; use `peft train --task {}`", task,
           task);
    BatchingOptions batching;
    batching.batch_size = a.batch_size;
    batching.max_len = a.max_len;
    batching.packing = a.packing;
    batching.shuffle = a.shuffle;
    batching.shifted = objective->shifted();
    batching.pad_id =
        impl_->tokenizer && impl_->tokenizer->pad_id() >= 0 ? impl_->tokenizer->pad_id() : 0;
    BatchBuilder train_data(objective->read(a.data, false), batching);
    std::unique_ptr<BatchBuilder> eval_data;
    if (!a.eval_data.empty()) {
      BatchingOptions eb = batching;
      eb.shuffle = false;
      eb.packing = false;
      eval_data = std::make_unique<BatchBuilder>(objective->read(a.eval_data, true), eb);
    }
    if (!a.out_dir.empty()) std::filesystem::create_directories(a.out_dir);
    Rng dropout_rng(a.seed, 2);
    ModelHooks* hooks = impl_->hooks();
    Method& method = *impl_->methods->methods().front();
    // The trainer says per batch whether it trains (dropout on) or evaluates; evaluation and
    // generation after training build their own contexts (training off).
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
    o.log_every = a.out_dir.empty() ? 0 : a.log_every;
    o.out_dir = a.out_dir;
    o.plot_title =
        fmt::format("{} fine-tune of {}", adapters().front().method, model.config().model_type);
    if (on_step)
      o.on_step = [&](const StepReport& r) {
        StepInfo s{r.step, r.total_steps, r.epoch,        r.loss,
                   r.lr,   r.grad_norm,   r.tokens_per_s, r.eval_loss};
        return on_step(s);
      };
    Trainer trainer(
        impl_->methods->params(), train_data, eval_data.get(), loss,
        [&](const std::string& dir) { method.save(dir); }, o);
    trainer.track_rng(&dropout_rng);
    if (!a.resume.empty()) trainer.resume_from(a.resume);
    const peft::TrainResult r = trainer.train();
    if (!a.out_dir.empty()) method.save(a.out_dir);
    TrainResult out;
    out.steps = r.steps;
    out.final_loss = r.final_loss;
    out.eval_loss = r.eval_loss;
    out.trainable_params = impl_->methods->trainable_count();
    out.tokens_per_s = r.tokens_per_s;
    out.seconds = r.seconds;
    out.cancelled = r.stopped;
    return out;
  });
}

EvalResult Model::evaluate(const std::string& data_file, int64_t batch_size) {
  return guarded([&] {
    std::vector<TokenRecord> records;
    for (Example& e : read_training_records(data_file, impl_->tokenizer.get(),
                                            impl_->model->config().vocab_size))
      records.push_back({std::move(e.input_ids), std::move(e.labels), std::move(e.token_type_ids)});
    const peft::EvalResult r = evaluate_records(*impl_->model, records, batch_size, impl_->hooks());
    return EvalResult{r.loss, r.ppl, r.tokens, r.token_accuracy, int64_t(records.size())};
  });
}

std::vector<float> Model::logits(const std::vector<int32_t>& ids) {
  return guarded([&] {
    if (ids.empty()) fail("logits: no tokens given");
    NoGradGuard no_grad;
    ModelInputs in;
    in.input_ids = Tensor::from_vector_i32(ids, {1, int64_t(ids.size())});
    Var hidden = impl_->model->forward(in, {.hooks = impl_->hooks()});
    const Tensor l = impl_->model->logits(hidden)->value;  // [1, P + T, V]
    const int64_t V = l.dim(-1), rows = l.numel() / V, T = int64_t(ids.size());
    const float* p = l.data<float>() + (rows - T) * V;  // past any virtual tokens
    return std::vector<float>(p, p + T * V);
  });
}

ClassifyResult Model::classify(const std::string& data_file, const ClassifyOptions& c) {
  return guarded([&] {
    const Tokenizer& tok = impl_->tok();
    ObjectiveConfig config;
    config.verbalizer = c.verbalizer;
    config.max_len = c.max_len;
    PetObjective pet({impl_->model.get(), &tok, impl_->dir}, config, c.pattern);
    BatchingOptions batching;
    batching.shuffle = false;
    batching.max_len = c.max_len;
    batching.shifted = false;
    batching.pad_id = tok.pad_id() >= 0 ? tok.pad_id() : 0;
    BatchBuilder data(pet.read(data_file, true), batching);
    const EvalMetrics m = pet.evaluate(data, impl_->hooks());
    ClassifyResult out;
    out.labels = m.labels;
    out.probabilities = m.probabilities;
    for (const std::vector<double>& p : m.probabilities)
      out.predictions.push_back(m.labels[size_t(std::max_element(p.begin(), p.end()) - p.begin())]);
    if (m.count > 0) {
      out.accuracy = m.accuracy;
      out.macro_f1 = macro_f1(m.confusion);
    }
    return out;
  });
}

GenerateResult Model::generate(const std::string& prompt, const GenerateOptions& g,
                               const TextCallback& on_text) {
  return guarded([&] {
    const Tokenizer& tok = impl_->tok();
    peft::GenerateOptions o;
    o.max_new_tokens = g.max_new_tokens;
    o.seed = g.seed;
    o.sampling.greedy = g.greedy;
    o.sampling.temperature = g.temperature;
    o.sampling.top_k = g.top_k;
    o.sampling.top_p = g.top_p;
    o.sampling.repetition_penalty = g.repetition_penalty;
    for (int64_t id : impl_->model->config().eos_token_ids) o.stop_ids.push_back(int32_t(id));
    if (tok.eos_id() >= 0) o.stop_ids.push_back(tok.eos_id());
    if (tok.chat().turn_end >= 0) o.stop_ids.push_back(tok.chat().turn_end);
    std::vector<int32_t> ids;
    if (g.chat) {
      std::vector<ChatMessage> turn{{"user", prompt}};
      ids = tok.render_chat(turn, true).ids;
    } else {
      ids = tok.encode(prompt, true);
    }
    TextStream stream(tok);
    // The callback's "stop" unwinds the library's generation loop (RAII throughout) by this
    // private exception; the tokens chosen so far are kept.
    struct Stop {};
    std::vector<int32_t> new_ids;
    bool cancelled = false;
    const auto t0 = std::chrono::steady_clock::now();
    peft::GenerateResult r;
    try {
      r = peft::generate(*impl_->model, ids, o, impl_->hooks(), [&](int32_t id) {
        new_ids.push_back(id);
        const std::string piece = stream.add(id);
        if (on_text && !piece.empty() && !on_text(piece)) throw Stop{};
      });
    } catch (const Stop&) {
      cancelled = true;
      r.ids = new_ids;
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const std::string rest = stream.flush();  // so that the pieces add up to the text
    if (on_text && !cancelled && !rest.empty()) on_text(rest);
    GenerateResult out;
    out.ids = r.ids;
    out.text = stream.text();
    out.stopped = r.stopped && !cancelled;
    out.tokens_per_s =
        r.seconds > 0 ? double(r.ids.size() > 1 ? r.ids.size() - 1 : 0) / r.seconds : 0.0;
    return out;
  });
}

MergeResult Model::merge(const std::string& out_dir, const std::string& dtype) const {
  return guarded([&] {
    namespace fs = std::filesystem;
    peft::Model& model = *impl_->model;
    MethodSet* methods = impl_->methods.get();
    if (!methods) fail("merge: no adapter is attached");
    for (size_t i = 0; i < methods->methods().size(); ++i)
      if (!methods->methods()[i]->mergeable()) {
        const std::string& dir = impl_->adapter_dirs[i];
        fail(
            "{}: {} adapters cannot be folded into the weights, nothing was written (only LoRA "
            "merges)",
            dir.empty() ? "the attached adapter" : dir,
            dir.empty() ? adapters()[i].method : method_of_adapter(dir).name);
      }
    const std::string base_dtype = model.config().torch_dtype == "bfloat16" ? "bf16" : "f32";
    const DType out_dtype = dtype_from_name(dtype.empty() ? base_dtype : dtype);
    if (out_dtype != DType::F32 && out_dtype != DType::BF16)
      fail("merge: dtype {} is not one a model folder holds here (f32 or bf16)", dtype);
    // The trained biases (PEFT's bias setting) are already the model's weights.
    std::set<std::string> merged;
    for (const LinearSite& site : model.linear_sites())
      for (const auto& m : methods->methods())
        if (m->merges(site.module + ".weight")) merged.insert(site.module + ".weight");
    std::vector<TensorToWrite> tensors;
    for (const auto& [name, var] : model.weights()) {
      // Every tensor in the output dtype, as transformers' save_pretrained does.
      const Tensor stored = var->value;
      tensors.push_back({name, out_dtype, stored.shape(), [&, name = name, stored]() {
                           Tensor w = stored.to(DType::F32);
                           if (merged.count(name))
                             for (const auto& m : methods->methods()) m->merge_into(name, w);
                           return out_dtype == DType::F32 ? w : w.to(out_dtype);
                         }});
    }
    fs::create_directories(out_dir);
    write_safetensors(join_path(out_dir, "model.safetensors"), tensors);
    nlohmann::json config = hf_config_to_json(model.config());
    config["torch_dtype"] = out_dtype == DType::BF16 ? "bfloat16" : "float32";
    write_json_atomic(join_path(out_dir, "config.json"), config);
    for (const char* f :
         {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model",
          "vocab.txt", "special_tokens_map.json", "generation_config.json"})
      if (file_exists(join_path(impl_->dir, f)))
        write_file_atomic(join_path(out_dir, f), read_text_file(join_path(impl_->dir, f)));
    return MergeResult{int64_t(merged.size()), dtype_name(out_dtype)};
  });
}

ExportResult Model::export_gguf(const std::string& path, const ExportOptions& options) const {
  return guarded([&] {
    ExportResult out;
    const peft::Model& model = *impl_->model;
    const bool adapter = impl_->methods && !options.merge;
    const std::string base_dtype = model.config().torch_dtype == "bfloat16" ? "bf16" : "f32";
    const DType dtype = dtype_from_name(
        !options.dtype.empty() ? options.dtype : (adapter ? std::string("f32") : base_dtype));
    out.dtype = dtype_name(dtype);
    if (adapter) {
      out.kind = "adapter";
      out.tensors = export_gguf_lora(model, *impl_->methods, dtype, path);
    } else {
      out.kind = "model";
      out.tensors = export_gguf_model(model, impl_->dir, impl_->methods.get(), dtype, path);
    }
    return out;
  });
}

}  // namespace peft::api
