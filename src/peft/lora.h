// LoRA (Hu et al. 2021) as Hugging Face PEFT defines it: beside a frozen linear W [out, in], a
// trainable branch y += s · B(A(dropout(x))), A [r, in], B [out, r], B = 0 at init so training
// starts at the base model; s = lora_alpha / r (rsLoRA: lora_alpha / √r). Targets, rank and alpha
// patterns, layer selection and bias handling follow PEFT's LoraConfig.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "autograd/params.h"
#include "core/rng.h"
#include "models/hooks.h"
#include "models/model.h"
#include "peft/method.h"

namespace peft {

struct LoraConfig {
  int r = 8;
  float lora_alpha = 8.0f;
  float lora_dropout = 0.0f;
  // target_modules: a list (exact name or dotted-suffix match), a string (regex full match),
  // "all-linear", or absent (the architecture's default list).
  std::vector<std::string> target_list;
  std::optional<std::string> target_regex;
  bool all_linear = false;
  bool targets_given = false;
  std::string bias = "none";  // none | all | lora_only
  bool use_rslora = false;
  std::string init_lora_weights = "true";  // true (kaiming-uniform A) | gaussian | false
  std::vector<int> layers_to_transform;    // empty: every layer
  std::map<std::string, int> rank_pattern;
  std::map<std::string, float> alpha_pattern;
  std::string base_model_name_or_path;
  std::string task_type = "CAUSAL_LM";

  // Reads PEFT's adapter_config.json fields (unknown keys ignored, missing keys default);
  // throws Error naming `source` for unsupported settings (use_dora, fan_in_fan_out, ...).
  static LoraConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
};

// PEFT's rule: regex full match for a string; else exact name or a ".name" suffix of the module
// path; then layers_to_transform on the layer index.
bool lora_targets(const LoraConfig& config, const LinearSite& site,
                  const std::vector<std::string>& default_targets);
// rank / alpha for one module after rank_pattern / alpha_pattern (keys match "(^|.*\.)key$").
int lora_rank_for(const LoraConfig& config, const std::string& module);
float lora_alpha_for(const LoraConfig& config, const std::string& module);
float lora_scale(const LoraConfig& config, int r, float alpha);

// PEFT's tensor names: base_model.model.<module>.lora_A.weight / .lora_B.weight.
std::string lora_key(const std::string& module, char which);

class LoraMethod final : public Method {
 public:
  // Declares A and B of every targeted site in `params` (names are PEFT's keys behind `group`).
  // Throws Error when no site matches the targets.
  LoraMethod(LoraConfig config, const std::vector<LinearSite>& sites,
             const std::vector<std::string>& default_targets, ParamStore& params,
             std::string group = "");
  // After params.allocate(): A per init_lora_weights, B = 0 (PEFT's init).
  void initialize(Rng& rng);

  void begin_forward(const ForwardContext& ctx) override;
  const LoraBranch* linear_branch(const LinearSite& site) override;

  // Method
  nlohmann::json config_json() const override { return config_.to_json(); }
  void bind(Model& model) override;
  void initialize(Rng& rng, const Tokenizer* /*tokenizer*/) override { initialize(rng); }
  void save(const std::string& dir) const override;
  void load(const std::string& dir) override;
  bool mergeable() const override { return true; }
  bool merges(const std::string& weight_name) const override;
  bool merge_into(const std::string& weight_name, Tensor& w) const override;

  const LoraConfig& config() const { return config_; }
  const std::vector<LinearSite>& targeted_sites() const { return targeted_; }
  const std::string& group() const { return group_; }
  // The trained base weights (bias setting), HF name -> store key; declared by declare_biases().
  void declare_biases(const Model& model);

 private:
  LoraConfig config_;
  ParamStore& params_;
  std::string group_;
  std::vector<LinearSite> targeted_;
  std::map<std::string, std::string> bias_keys_;
  std::map<std::string, LoraBranch> branches_;  // by module, filled on first use
  float dropout_ = 0.0f;  // this forward's: lora_dropout while training, else 0
  Rng* dropout_rng_ = nullptr;
};

// The model weights PEFT's `bias` setting trains, HF weight name -> adapter key: none; lora_only:
// the biases of targeted layers; all: every weight whose name contains "bias" (norms and the MLM
// head included). A targeted layer's bias is stored as <module>.base_layer.bias, the name it has
// inside PEFT's LoRA wrapper (so PEFT loads it back), any other as <name>.
std::map<std::string, std::string> lora_bias_keys(const LoraConfig& config,
                                                  const std::vector<LinearSite>& targeted,
                                                  const std::map<std::string, Var>& weights);

// LoRA on a model: the method, the biases its bias setting trains declared beside A and B,
// params allocated, and those biases bound into the model starting from their base values. Then
// initialize() or load_lora_weights().
std::unique_ptr<LoraMethod> attach_lora(Model& model, LoraConfig config, ParamStore& params);

// The adapter folder Hugging Face PEFT reads: adapter_config.json (sorted keys, indent 2) and
// adapter_model.safetensors with PEFT's key names, both written atomically.
void save_lora_adapter(const std::string& dir, const LoraMethod& lora, const ParamStore& params);
// The registry row of LoRA (peft/registry.cpp lists it).
MethodInfo lora_method_info();
// Reads dir/adapter_config.json (only the config).
LoraConfig read_lora_config(const std::string& dir);
// Loads dir/adapter_model.safetensors into the declared adapter parameters: every one must be
// present with its declared shape (an error names the key, expected and found shape), except that
// a bias may be stored as <module>.bias or <module>.base_layer.bias, and a missing one keeps its
// base value (as PEFT loads it); the file may hold no LoRA tensor for a module this model lacks.
void load_lora_weights(const std::string& dir, ParamStore& params, const std::string& group = "");

// W [out, in] (f32, or 16-bit: computed in f32 then rounded) += sign · s · B·A.
void lora_merge(Tensor& weight, const Tensor& A, const Tensor& B, float scale, float sign = 1.0f);

}  // namespace peft
