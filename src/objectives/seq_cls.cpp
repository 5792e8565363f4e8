// Sequence classification (transformers' *ForSequenceClassification): a linear head on a pooled
// hidden state, trained beside any method and saved as PEFT saves modules_to_save.
//   BERT:      pooled = tanh(W_p·h[CLS] + b_p)  (the checkpoint's pooler; trainable when absent)
//              s = W_c·pooled + b_c             ("classifier", N(0, 0.02) weights, zero bias)
//   decoders:  s = W_s·h[last non-pad token]    ("score", no bias)
// Classes: --labels in that order, else the sorted labels of the training data. A model folder
// of a *ForSequenceClassification class (transformers' or --method full's) brings its head and
// classes (id2label): training continues from that head and classify scores with it.
#include <algorithm>
#include <set>

#include "core/error.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "io/torch_pickle.h"
#include "models/model.h"
#include "models/registry.h"
#include "objectives/batches.h"
#include "objectives/classification.h"
#include "objectives/seq_cls.h"
#include "ops/activation.h"
#include "ops/linear.h"

namespace peft {
namespace {

class SeqClsObjective final : public ClassificationObjective {
 public:
  SeqClsObjective(const ObjectiveContext& ctx, const ObjectiveConfig& cfg)
      : ClassificationObjective(ctx, cfg), bert_(!ctx.model->is_causal_lm()) {
    if (!ctx_.tokenizer) fail("--task seq-cls needs the model folder's tokenizer");
    labels_ = cfg_.labels;
    head_ = bert_ ? "classifier" : "score";
    const std::vector<std::string> folder_labels =
        seq_cls_folder_labels(ctx_.model->config(), ctx_.model_dir);
    if (!folder_labels.empty()) {
      folder_head_ = true;
      if (labels_.empty())
        labels_ = folder_labels;
      else if (labels_ != folder_labels)
        fail("{}: the folder's head classifies {} classes (id2label); --labels gives {}",
             ctx_.model_dir, folder_labels.size(), labels_.size());
    }
    if (bert_) {
      // The pooler, which the masked-LM model does not use, from the checkpoint when it has one.
      SafetensorsSet set(ctx_.model_dir);
      for (const char* prefix : {"bert.", ""})
        if (set.contains(std::string(prefix) + "pooler.dense.weight") &&
            set.contains(std::string(prefix) + "pooler.dense.bias")) {
          pooler_w_ = constant(set.get(std::string(prefix) + "pooler.dense.weight").to(DType::F32),
                               "pooler.w");
          pooler_b_ = constant(set.get(std::string(prefix) + "pooler.dense.bias").to(DType::F32),
                               "pooler.b");
          break;
        }
      pooler_trainable_ = !pooler_w_;
    }
  }

  std::vector<Example> read(const std::string& path, bool eval) override {
    if (labels_.empty()) {
      std::set<std::string> seen;
      for (const ClassRecord& r : read_class_records(path))
        if (!r.label.empty())
          seen.insert(r.label);
        else
          for (const auto& soft : r.soft_labels) seen.insert(soft.first);
      labels_.assign(seen.begin(), seen.end());
      if (labels_.size() < 2)
        fail("{}: --task seq-cls needs at least two distinct labels, found {}", path,
             labels_.size());
    }
    return ClassificationObjective::read(path, eval);
  }

  void declare(ParamStore& params) override {
    const int64_t L = int64_t(labels_.size()), C = ctx_.model->config().hidden_size;
    params.declare(head_ + ".weight", {L, C});
    if (bert_) params.declare(head_ + ".bias", {L});
    if (pooler_trainable_) {
      params.declare("bert.pooler.dense.weight", {C, C});
      params.declare("bert.pooler.dense.bias", {C});
    }
  }

  void initialize(const ParamStore& params, Rng& rng) override {
    if (folder_head_) {  // the model folder's own head
      SafetensorsSet set(ctx_.model_dir);
      for (const ParamStore::Entry& e : params.entries()) {
        if (!e.name.starts_with(head_ + ".")) continue;
        if (!set.contains(e.name)) fail("{}: no \"{}\" (the seq-cls head)", ctx_.model_dir, e.name);
        const Tensor t = set.get(e.name).to(DType::F32);
        if (t.shape() != e.shape)
          fail("{}: \"{}\" has shape {}, expected {} ({} classes)", ctx_.model_dir, e.name,
               shape_str(t.shape()), shape_str(e.shape), labels_.size());
        std::copy_n(t.data<float>(), e.numel, e.var->value.data<float>());
      }
      bind(params);
      return;
    }
    const auto& raw = ctx_.model->config().raw;
    const float std = raw.contains("initializer_range") && raw["initializer_range"].is_number()
                          ? raw["initializer_range"].get<float>()
                          : 0.02f;
    for (const ParamStore::Entry& e : params.entries()) {
      if (!is_head(e.name)) continue;
      float* v = e.var->value.data<float>();
      const bool bias = e.name.ends_with(".bias");
      for (int64_t i = 0; i < e.numel; ++i) v[i] = bias ? 0.0f : std * rng.normal();
    }
    bind(params);
  }

  void load(const ParamStore& params, const std::string& dir) override {
    if (!file_exists(join_path(dir, "adapter_model.safetensors")) &&
        file_exists(join_path(dir, kHubHeadConfig))) {
      load_adapterhub_head(params, dir);
      return;
    }
    SafetensorsFile file(join_path(dir, "adapter_model.safetensors"));
    for (const ParamStore::Entry& e : params.entries()) {
      if (!is_head(e.name)) continue;
      std::string key;
      for (const std::string prefix : {"base_model.model.", "base_model.", ""})
        if (file.contains(prefix + e.name)) key = prefix + e.name;
      if (key.empty())
        fail("{}: adapter_model.safetensors has no \"{}\" (the seq-cls head)", dir, e.name);
      const Tensor t = file.get(key).to(DType::F32);
      if (t.shape() != e.shape)
        fail("{}: \"{}\" has shape {}, expected {} ({} classes)", dir, key, shape_str(t.shape()),
             shape_str(e.shape), labels_.size());
      std::copy_n(t.data<float>(), e.numel, e.var->value.data<float>());
    }
    bind(params);
  }

  void save(const ParamStore& params, const std::string& dir) const override {
    // Beside the method's tensors, under PEFT's names: base_model.model.<module> for LoRA-style
    // methods, base_model.<module> for prompt-learning ones (their base_model is the HF model).
    const std::string config_path = join_path(dir, "adapter_config.json");
    const std::string weights_path = join_path(dir, "adapter_model.safetensors");
    if (file_exists(config_path)) {  // an AdapterHub folder (bottleneck adapters): its head files
      const nlohmann::json held = read_json_file(config_path);
      if (!held.contains("peft_type") && held.contains("config")) {
        save_adapterhub_head(params, dir);
        return;
      }
    }
    nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
    for (size_t i = 0; i < labels_.size(); ++i) {
      id2label[std::to_string(i)] = labels_[i];
      label2id[labels_[i]] = int64_t(i);
    }
    if (!file_exists(config_path) || !file_exists(weights_path)) {
      // A full fine-tune: the model folder's config.json names the classes and the
      // *ForSequenceClassification class, whose head (classifier / score) is in its weights.
      const std::string model_config = join_path(dir, "config.json");
      if (!file_exists(model_config)) return;
      nlohmann::json config = read_json_file(model_config);
      std::string arch = config.contains("architectures") && config["architectures"].is_array() &&
                                 !config["architectures"].empty()
                             ? config["architectures"][0].get<std::string>()
                             : std::string();
      for (const char* suffix :
           {"ForSequenceClassification", "ForMaskedLM", "ForCausalLM", "Model"})
        if (arch.ends_with(suffix)) {
          arch = arch.substr(0, arch.size() - std::string(suffix).size());
          break;
        }
      if (!arch.empty()) config["architectures"] = {arch + "ForSequenceClassification"};
      if (bert_ && !pooler_trainable_) {  // the checkpoint's frozen pooler goes with the head
        const std::string weights = join_path(dir, "model.safetensors");
        std::vector<std::pair<std::string, Tensor>> tensors;
        {
          SafetensorsFile existing(weights);
          for (const SafetensorInfo& info : existing.tensors())
            tensors.emplace_back(info.name, existing.get(info.name).to(DType::F32).clone());
        }
        tensors.emplace_back("bert.pooler.dense.weight", pooler_w_->value);
        tensors.emplace_back("bert.pooler.dense.bias", pooler_b_->value);
        save_safetensors(weights, tensors);
      }
      config["num_labels"] = labels_.size();
      config["id2label"] = id2label;
      config["label2id"] = label2id;
      write_json_atomic(model_config, config);
      return;
    }
    nlohmann::json config = read_json_file(config_path);
    const std::string type = config.value("peft_type", "");
    const bool prompt_learning =
        type == "PROMPT_TUNING" || type == "P_TUNING" || type == "PREFIX_TUNING";
    const std::string prefix = prompt_learning ? "base_model." : "base_model.model.";
    std::vector<std::pair<std::string, Tensor>> tensors;
    {
      SafetensorsFile existing(weights_path);
      for (const SafetensorInfo& info : existing.tensors())
        tensors.emplace_back(info.name, existing.get(info.name).to(DType::F32).clone());
    }
    std::vector<std::string> modules = {head_};
    for (const ParamStore::Entry& e : params.entries())
      if (is_head(e.name)) tensors.emplace_back(prefix + e.name, e.var->value);
    if (pooler_trainable_) modules.push_back("bert.pooler");
    config["modules_to_save"] = modules;
    config["task_type"] = "SEQ_CLS";
    config["id2label"] = id2label;
    save_safetensors(weights_path, tensors);
    write_json_atomic(config_path, config);
  }

  Var scores(const Batch& b, const ForwardContext& fwd) override {
    PEFT_CHECK(weight_, "the seq-cls head is used before it is initialised or loaded");
    Var hidden = ctx_.model->forward(model_inputs(b), fwd);
    Var pooled = gather_rows(hidden, read_rows(b, hidden));  // [B, C]
    if (bert_) pooled = tanh(linear(pooled, pooler_w_, pooler_b_));
    return linear(pooled, weight_, bias_);
  }

 private:
  // AdapterHub's static head (a *ForSequenceClassification model with adapters.init, saved by
  // save_adapter): head_config.json {"config": null, hidden_size, label2id, model_class,
  // model_name, model_type, name: null, num_labels, version} and pytorch_model_head.bin with the
  // head's own keys (classifier.weight / .bias, score.weight; a pooler this run trained too).
  static constexpr const char* kHubHeadConfig = "head_config.json";
  static constexpr const char* kHubHeadWeights = "pytorch_model_head.bin";

  std::string hub_model_class() const {
    std::string c = ctx_.model->arch().architecture;
    for (const char* suffix : {"ForCausalLM", "ForMaskedLM"})
      if (c.ends_with(suffix)) c = c.substr(0, c.size() - std::string(suffix).size());
    return c + "ForSequenceClassification";
  }

  void save_adapterhub_head(const ParamStore& params, const std::string& dir) const {
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const ParamStore::Entry& e : params.entries())
      if (is_head(e.name)) tensors.emplace_back(e.name, e.var->value);
    nlohmann::json label2id = nlohmann::json::object();
    for (size_t i = 0; i < labels_.size(); ++i) label2id[labels_[i]] = i;
    write_torch_checkpoint(join_path(dir, kHubHeadWeights), tensors);
    write_json_atomic(join_path(dir, kHubHeadConfig),
                      {{"config", nullptr},
                       {"hidden_size", ctx_.model->config().hidden_size},
                       {"label2id", label2id},
                       {"model_class", hub_model_class()},
                       {"model_name", ""},
                       {"model_type", ctx_.model->config().model_type},
                       {"name", nullptr},
                       {"num_labels", labels_.size()},
                       {"version", "adapters.1.3.0"}});
  }

  void load_adapterhub_head(const ParamStore& params, const std::string& dir) {
    const std::string config_path = join_path(dir, kHubHeadConfig);
    const nlohmann::json config = read_json_file(config_path);
    // Class k of this run must be class k of the head: label2id must give our order.
    if (auto it = config.find("label2id"); it != config.end() && it->is_object()) {
      if (it->size() != labels_.size())
        fail("{}: the head has {} classes, the data {}", config_path, it->size(), labels_.size());
      for (size_t i = 0; i < labels_.size(); ++i) {
        auto l = it->find(labels_[i]);
        if (l == it->end() || !l->is_number_integer() || l->get<size_t>() != i)
          fail("{}: label2id does not give \"{}\" class {} (give --labels in the head's order)",
               config_path, labels_[i], i);
      }
    }
    const std::string bin = join_path(dir, kHubHeadWeights);
    if (!file_exists(bin)) fail("{}: {} is missing", dir, kHubHeadWeights);
    const std::map<std::string, Tensor> stored = read_torch_checkpoint(bin);
    for (const ParamStore::Entry& e : params.entries()) {
      if (!is_head(e.name)) continue;
      auto it = stored.find(e.name);
      if (it == stored.end()) fail("{}: no \"{}\" (the seq-cls head)", bin, e.name);
      if (it->second.shape() != e.shape)
        fail("{}: \"{}\" has shape {}, expected {} ({} classes)", bin, e.name,
             shape_str(it->second.shape()), shape_str(e.shape), labels_.size());
      std::copy_n(it->second.data<float>(), e.numel, e.var->value.data<float>());
    }
    bind(params);
  }

  bool is_head(const std::string& name) const {
    return name.starts_with(head_ + ".") || name.starts_with("bert.pooler.");
  }
  void bind(const ParamStore& params) {
    weight_ = params.get(head_ + ".weight");
    if (bert_) bias_ = params.get(head_ + ".bias");
    if (pooler_trainable_) {
      pooler_w_ = params.get("bert.pooler.dense.weight");
      pooler_b_ = params.get("bert.pooler.dense.bias");
    }
  }

  Example build(const ClassRecord& r, int32_t class_index) override {
    const Tokenizer& tok = *ctx_.tokenizer;
    std::vector<int32_t> a = tok.encode(r.text, false), b = tok.encode(r.text_b, false);
    Example e;
    if (bert_) {  // [CLS] a [SEP] (b [SEP]), token types 0 … 0 (1 … 1)
      const int32_t cls = tok.special_ids().cls, sep = tok.special_ids().sep;
      fit_pieces(a, b, cfg_.max_len - 2 - (b.empty() ? 0 : 1));
      e.input_ids.push_back(cls);
      e.input_ids.insert(e.input_ids.end(), a.begin(), a.end());
      e.input_ids.push_back(sep);
      e.token_type_ids.assign(e.input_ids.size(), 0);
      if (!r.text_b.empty()) {
        e.input_ids.insert(e.input_ids.end(), b.begin(), b.end());
        e.input_ids.push_back(sep);
        e.token_type_ids.resize(e.input_ids.size(), 1);
      }
      e.labels.assign(e.input_ids.size(), kIgnoreIndex);
      e.labels[0] = class_index;
    } else {
      const std::vector<int32_t> front = tok.encode("", true);
      fit_pieces(a, b, cfg_.max_len - int64_t(front.size()));
      e.input_ids = front;
      e.input_ids.insert(e.input_ids.end(), a.begin(), a.end());
      e.input_ids.insert(e.input_ids.end(), b.begin(), b.end());
      if (e.input_ids.empty()) fail("line {}: empty text", r.line);
      e.labels.assign(e.input_ids.size(), kIgnoreIndex);
      e.labels.back() = class_index;
    }
    return e;
  }

  std::vector<int32_t> read_positions(const Batch& b) const override {
    return bert_ ? std::vector<int32_t>(size_t(b.batch), 0) : last_tokens(b);
  }

  bool bert_, pooler_trainable_ = false, folder_head_ = false;
  std::string head_;
  Var pooler_w_, pooler_b_, weight_, bias_;
};

}  // namespace

std::vector<std::string> seq_cls_folder_labels(const HFConfig& config, const std::string& dir) {
  if (!is_seq_cls_config(config)) return {};
  const nlohmann::json& raw = config.raw;
  int64_t n = raw.contains("num_labels") && raw["num_labels"].is_number_integer()
                  ? raw["num_labels"].get<int64_t>()
                  : 0;
  const bool named = raw.contains("id2label") && raw["id2label"].is_object();
  if (named) n = int64_t(raw["id2label"].size());
  if (n < 1) fail("{}: config.json names a *ForSequenceClassification class without id2label", dir);
  std::vector<std::string> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const std::string key = std::to_string(i);
    if (!named)
      labels[size_t(i)] = "LABEL_" + key;
    else if (!raw["id2label"].contains(key) || !raw["id2label"][key].is_string())
      fail("{}: config.json id2label has no string for class {}", dir, key);
    else
      labels[size_t(i)] = raw["id2label"][key].get<std::string>();
  }
  return labels;
}

std::unique_ptr<Objective> make_seq_cls_objective(const ObjectiveContext& ctx,
                                                  const ObjectiveConfig& cfg) {
  return std::make_unique<SeqClsObjective>(ctx, cfg);
}

}  // namespace peft
