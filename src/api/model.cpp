// The public C++ API (include/peft/peft.hpp) over the library: every call translates the
// library's errors (peft::Error, internal checks, allocation failures) into peft::api::Error.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/impl.h"
#include "infer/generate.h"
#include "infer/stop_tokens.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "models/evaluate.h"
#include "models/registry.h"
#include "objectives/objective.h"
#include "objectives/pet.h"
#include "objectives/seq_cls.h"
#include "peft/gguf_export.h"
#include "peft/method.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

namespace peft::api {

namespace {

// Holds back a trailing incomplete UTF-8 sequence (decoded as U+FFFD) until it completes; the
// pieces add up to the decoded text.
class TextStream {
 public:
  explicit TextStream(const peft::Tokenizer& tok) : tok_(tok) {}
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
  const peft::Tokenizer& tok_;
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

// MethodSetting::Type mirrors MethodFlag::Type, so that one converts to the other by value.
static_assert(int(MethodSetting::Type::Int) == int(MethodFlag::Type::Int) &&
              int(MethodSetting::Type::Float) == int(MethodFlag::Type::Float) &&
              int(MethodSetting::Type::Bool) == int(MethodFlag::Type::Bool) &&
              int(MethodSetting::Type::String) == int(MethodFlag::Type::String) &&
              int(MethodSetting::Type::IntList) == int(MethodFlag::Type::IntList) &&
              int(MethodSetting::Type::Json) == int(MethodFlag::Type::Json) &&
              int(MethodSetting::Type::Custom) == int(MethodFlag::Type::Custom));

std::vector<MethodSetting> method_settings() {
  std::vector<MethodSetting> out;
  for (const MethodFlag& f : all_method_flags()) {
    MethodSetting s;
    s.name = f.name;
    s.type = MethodSetting::Type(int(f.type));  // the same enumerators, in the same order
    s.help = f.help;
    s.group = f.group;
    s.min = f.min;
    s.max = f.max;
    s.min_open = f.min_open;
    s.max_open = f.max_open;
    s.choices = f.choices;
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> objective_names() {
  std::vector<std::string> out;
  for (const ObjectiveInfo& o : objective_registry()) out.push_back(o.name);
  return out;
}

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
  i.sequence_classes = seq_cls_folder_labels(c, impl_->dir);
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

EvalResult Model::evaluate(const std::string& data_file, int64_t batch_size) {
  EvalOptions o;
  o.batch_size = batch_size;
  return evaluate(data_file, o);
}

EvalResult Model::evaluate(const std::string& data_file, const EvalOptions& options) {
  return guarded([&] {
    peft::Model& model = *impl_->model;
    if (!options.pattern.empty()) {  // classification records scored as PET does
      ObjectiveConfig config;
      config.verbalizer = options.verbalizer;
      PetObjective pet({impl_->model.get(), &impl_->tok(), impl_->dir}, config, options.pattern);
      BatchingOptions batching;
      batching.shuffle = false;
      batching.shifted = false;
      batching.pad_id = impl_->pad_id();
      const BatchBuilder data(pet.read(data_file, true), batching);
      const EvalMetrics m = pet.evaluate(data, impl_->hooks());
      if (m.count == 0) fail("{}: no labelled record to score", data_file);
      EvalResult r;
      r.loss = m.loss;
      r.ppl = std::exp(m.loss);
      r.tokens = m.count;
      r.records = int64_t(m.scores.size());
      r.accuracy = m.accuracy;
      r.macro_f1 = macro_f1(m.confusion);
      return r;
    }
    std::vector<Example> examples =
        read_training_records(data_file, impl_->tokenizer.get(), model.config().vocab_size);
    check_records_usable(examples, data_file, model.is_causal_lm(),
                         model.config().max_position_embeddings);
    std::vector<TokenRecord> records;
    for (Example& e : examples)
      records.push_back({std::move(e.input_ids), std::move(e.labels), std::move(e.token_type_ids)});
    const peft::EvalResult r = evaluate_records(model, records, options.batch_size, impl_->hooks());
    EvalResult out;
    out.loss = r.loss;
    out.ppl = r.ppl;
    out.tokens = r.tokens;
    out.token_accuracy = r.token_accuracy;
    out.records = int64_t(records.size());
    return out;
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

namespace {

// The class names of a seq-cls adapter folder (id2label in adapter_config.json), or an error
// saying what classify needs.
std::vector<std::string> seq_cls_labels(const std::string& dir) {
  const nlohmann::json config = read_json_file(join_path(dir, "adapter_config.json"));
  if (config.value("task_type", "") != "SEQ_CLS" || !config.contains("id2label") ||
      !config["id2label"].is_object())
    fail(
        "{}: not a sequence-classification adapter (adapter_config.json has no task_type "
        "SEQ_CLS with id2label); for PET give --pattern and --verbalizer",
        dir);
  const nlohmann::json& id2label = config["id2label"];
  std::vector<std::string> labels(id2label.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string key = std::to_string(i);
    if (!id2label.contains(key) || !id2label[key].is_string())
      fail("{}: adapter_config.json id2label has no string for class {}", dir, key);
    labels[i] = id2label[key].get<std::string>();
  }
  return labels;
}

// Distillation data (PET / iPET): every record of `data_file` with the distribution at
// temperature T, q = softmax(s / T), as "soft_labels" (objectives/classification.h trains on it).
void write_distillation(const std::string& data_file, const std::string& out, double T,
                        const EvalMetrics& m) {
  const std::vector<ClassRecord> records = read_class_records(data_file);
  PEFT_CHECK(records.size() == m.scores.size(), "distillation: {} records, {} scores",
             records.size(), m.scores.size());
  std::string text;
  for (size_t r = 0; r < records.size(); ++r) {
    const std::vector<double>& s = m.scores[r];
    const double top = *std::max_element(s.begin(), s.end()) / T;
    double z = 0;
    for (double v : s) z += std::exp(v / T - top);
    nlohmann::ordered_json line;
    line["text"] = records[r].text;
    if (!records[r].text_b.empty()) line["text_b"] = records[r].text_b;
    nlohmann::ordered_json soft;
    for (size_t k = 0; k < s.size(); ++k) soft[m.labels[k]] = std::exp(s[k] / T - top) / z;
    line["soft_labels"] = soft;
    text += line.dump() + "\n";
  }
  write_file_atomic(out, text);
}

}  // namespace

ClassifyResult Model::classify(const std::string& data_file, const ClassifyOptions& c) {
  return guarded([&] {
    const peft::Tokenizer& tok = impl_->tok();
    const size_t n = c.patterns.size();
    if (n > 0 && c.verbalizer.empty()) fail("classify: PET patterns need a verbalizer");
    if (!c.pattern_adapters.empty() && c.pattern_adapters.size() != n)
      fail("classify: {} pattern adapters for {} patterns", c.pattern_adapters.size(), n);
    if (!c.pattern_weights.empty() && c.pattern_weights.size() != n)
      fail("classify: {} pattern weights for {} patterns", c.pattern_weights.size(), n);
    const ObjectiveContext context{impl_->model.get(), &tok, impl_->dir};
    BatchingOptions batching;
    batching.shuffle = false;
    batching.max_len = c.max_len;
    batching.shifted = false;
    batching.pad_id = impl_->pad_id();
    ObjectiveConfig config;
    config.verbalizer = c.verbalizer;
    config.max_len = c.max_len;
    EvalMetrics m;
    std::vector<EvalMetrics> members;
    if (n == 0) {  // a sequence-classification head: the adapter folder's, else the model's
      if (impl_->adapter_dirs.size() > 1 ||
          (impl_->adapter_dirs.empty() &&
           seq_cls_folder_labels(impl_->model->config(), impl_->dir).empty()))
        fail(
            "classify needs PET patterns and a verbalizer, one sequence-classification adapter "
            "folder attached, or a *ForSequenceClassification model folder");
      // The head lives in the adapter folder (a stacked run's: its first method's).
      std::string head_dir;
      if (!impl_->adapter_dirs.empty()) {
        if (impl_->adapter_dirs[0].empty())
          fail(
              "classify: the attached adapter is fresh; a sequence-classification head is read "
              "from a trained adapter folder");
        head_dir = adapter_folders(impl_->adapter_dirs[0]).front();
        config.labels = seq_cls_labels(head_dir);
      }
      config.verbalizer.clear();
      std::unique_ptr<Objective> head = make_seq_cls_objective(context, config);
      ParamStore params;
      head->declare(params);
      params.allocate();
      if (head_dir.empty()) {
        Rng unused(0, 0);
        head->initialize(params, unused);  // the folder's head
      } else {
        head->load(params, head_dir);
      }
      BatchBuilder data(head->read(data_file, true), batching);
      m = head->evaluate(data, impl_->hooks());
    } else {
      for (size_t i = 0; i < n; ++i) {
        std::unique_ptr<MethodSet> own;  // this pattern's adapter, in place of the attached ones
        if (!c.pattern_adapters.empty()) {
          own = std::make_unique<MethodSet>(*impl_->model);
          own->attach_folders({c.pattern_adapters[i]});
        }
        PetObjective pet(context, config, c.patterns[i]);
        BatchBuilder data(pet.read(data_file, true), batching);
        members.push_back(pet.evaluate(data, own ? own->hooks() : impl_->hooks()));
      }
      // The ensemble: the weighted mean of the members' class scores. One pattern goes through it
      // too, so that its metrics are computed from the scores as an ensemble's are.
      {
        double total_weight = 0;
        std::vector<std::vector<double>> scores(members[0].scores.size(),
                                                std::vector<double>(members[0].labels.size(), 0.0));
        for (size_t i = 0; i < n; ++i) {
          const double w = c.pattern_weights.empty() ? 1.0 : c.pattern_weights[i];
          total_weight += w;
          for (size_t r = 0; r < scores.size(); ++r)
            for (size_t k = 0; k < scores[r].size(); ++k)
              scores[r][k] += w * members[i].scores[r][k];
        }
        if (!(total_weight > 0)) fail("--pattern-weights must sum to a positive number");
        for (auto& row : scores)
          for (double& v : row) v /= total_weight;
        m = classification_metrics(members[0].labels, scores, members[0].targets);
      }
    }
    if (!c.distill_out.empty())
      write_distillation(data_file, c.distill_out, c.distill_temperature, m);
    ClassifyResult out;
    out.labels = m.labels;
    out.scores = m.scores;
    out.probabilities = m.probabilities;
    for (const std::vector<double>& p : m.probabilities) {
      size_t best = 0;  // the first of equal maxima
      for (size_t k = 0; k < p.size(); ++k)
        if (p[k] > p[best]) best = k;
      out.predictions.push_back(m.labels[best]);
    }
    out.labelled = m.count;
    if (m.count > 0) {
      out.accuracy = m.accuracy;
      out.macro_f1 = macro_f1(m.confusion);
      out.loss = m.loss;
      out.confusion = m.confusion;
      if (n > 1)
        for (const EvalMetrics& e : members) out.pattern_accuracies.push_back(e.accuracy);
    }
    return out;
  });
}

namespace {

// The end tokens as transformers' generate() takes them (generation_config.json, else
// config.json), the tokenizer's EOS, and the chat format's end of turn.
std::vector<int32_t> stop_ids(const std::string& dir, const peft::Model& model,
                              const peft::Tokenizer& tok) {
  std::vector<int32_t> out;
  const HFConfig& config = model.config();
  for (int64_t id : generation_eos_ids(dir, config.eos_token_ids, config.vocab_size))
    out.push_back(int32_t(id));
  if (tok.eos_id() >= 0) out.push_back(tok.eos_id());
  if (tok.chat().turn_end >= 0) out.push_back(tok.chat().turn_end);
  return out;
}

GenerateResult generate_from(const std::string& dir, peft::Model& model, const peft::Tokenizer& tok,
                             ModelHooks* hooks, const std::vector<int32_t>& ids,
                             const GenerateOptions& g, const TextCallback& on_text) {
  peft::GenerateOptions o;
  o.max_new_tokens = g.max_new_tokens;
  o.seed = g.seed;
  o.sampling.greedy = g.greedy;
  o.sampling.temperature = g.temperature;
  o.sampling.top_k = g.top_k;
  o.sampling.top_p = g.top_p;
  o.sampling.repetition_penalty = g.repetition_penalty;
  o.stop_ids = stop_ids(dir, model, tok);
  TextStream stream(tok);
  // The callback's "stop" unwinds the library's generation loop (RAII throughout) by this
  // private exception; the tokens chosen so far are kept.
  struct Stop {};
  std::vector<int32_t> new_ids;
  bool cancelled = false;
  const auto t0 = std::chrono::steady_clock::now();
  peft::GenerateResult r;
  try {
    r = peft::generate(model, ids, o, hooks, [&](int32_t id) {
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
  out.prompt_tokens = int64_t(ids.size());
  out.prefill_tokens_per_s = r.prefill_seconds > 0 ? double(ids.size()) / r.prefill_seconds : 0.0;
  return out;
}

}  // namespace

GenerateResult Model::generate(const std::string& prompt, const GenerateOptions& g,
                               const TextCallback& on_text) {
  if (g.chat) return chat({{"user", prompt}}, g, on_text);
  return guarded([&] {
    const peft::Tokenizer& tok = impl_->tok();
    return generate_from(impl_->dir, *impl_->model, tok, impl_->hooks(), tok.encode(prompt, true),
                         g, on_text);
  });
}

GenerateResult Model::chat(const std::vector<ChatMessage>& messages, const GenerateOptions& g,
                           const TextCallback& on_text) {
  return guarded([&] {
    const peft::Tokenizer& tok = impl_->tok();
    std::vector<peft::ChatMessage> turns;
    for (const ChatMessage& m : messages) turns.push_back({m.role, m.content});
    return generate_from(impl_->dir, *impl_->model, tok, impl_->hooks(),
                         tok.render_chat(turns, true).ids, g, on_text);
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
