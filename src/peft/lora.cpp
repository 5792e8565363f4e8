#include "peft/lora.h"

#include <cmath>
#include <regex>
#include <sstream>
#include <vector>

#include "io/files.h"
#include "io/safetensors.h"
#include "kernels/gemm.h"
#include "models/registry.h"

namespace peft {
namespace {

bool suffix_match(const std::string& module, const std::string& target) {
  return module == target ||
         (module.size() > target.size() &&
          module.compare(module.size() - target.size(), target.size(), target) == 0 &&
          module[module.size() - target.size() - 1] == '.');
}

// PEFT's get_pattern_key: the first pattern key k with re.match("(^|.*\.)k$", module).
template <typename V>
const V* pattern_lookup(const std::map<std::string, V>& patterns, const std::string& module) {
  for (const auto& [key, value] : patterns) {
    if (std::regex_match(module, std::regex("(^|.*\\.)" + key))) return &value;
  }
  return nullptr;
}

}  // namespace

bool lora_targets(const LoraConfig& config, const LinearSite& site,
                  const std::vector<std::string>& default_targets) {
  bool match = false;
  if (config.all_linear) {
    match = site.layer >= 0 || site.name != "lm_head";
  } else if (config.target_regex) {
    match = std::regex_match(site.module, std::regex(*config.target_regex));
  } else {
    const auto& targets = config.targets_given ? config.target_list : default_targets;
    for (const std::string& t : targets) match = match || suffix_match(site.module, t);
  }
  if (!match || config.layers_to_transform.empty()) return match;
  if (site.layer < 0) return false;
  for (int l : config.layers_to_transform)
    if (l == site.layer) return true;
  return false;
}

int lora_rank_for(const LoraConfig& config, const std::string& module) {
  const int* r = pattern_lookup(config.rank_pattern, module);
  return r ? *r : config.r;
}

float lora_alpha_for(const LoraConfig& config, const std::string& module) {
  const float* a = pattern_lookup(config.alpha_pattern, module);
  return a ? *a : config.lora_alpha;
}

float lora_scale(const LoraConfig& config, int r, float alpha) {
  return config.use_rslora ? alpha / std::sqrt(float(r)) : alpha / float(r);
}

std::string lora_key(const std::string& module, char which) {
  return "base_model.model." + module + ".lora_" + which + ".weight";
}

LoraMethod::LoraMethod(LoraConfig config, const std::vector<LinearSite>& sites,
                       const std::vector<std::string>& default_targets, ParamStore& params,
                       std::string group)
    : config_(std::move(config)), params_(params), group_(std::move(group)) {
  if (!config_.targets_given) {  // PEFT writes the resolved default targets into the config
    config_.target_list = default_targets;
    config_.targets_given = true;
  }
  for (const LinearSite& site : sites) {
    const bool targeted = lora_targets(config_, site, default_targets);
    if (targeted) {
      const int r = lora_rank_for(config_, site.module);
      params_.declare(group_ + lora_key(site.module, 'A'), {r, site.in_features});
      params_.declare(group_ + lora_key(site.module, 'B'), {site.out_features, r});
      targeted_.push_back(site);
    }
  }
  if (targeted_.empty()) {
    std::string names;
    for (size_t i = 0; i < sites.size() && i < 8; ++i) names += (i ? ", " : "") + sites[i].module;
    fail(
        "LoRA target_modules match no linear layer of this model (its linear layers include: {}{})",
        names, sites.size() > 8 ? ", ..." : "");
  }
}

void LoraMethod::initialize(Rng& rng) {
  for (const LinearSite& site : targeted_) {
    Tensor a = params_.get(group_ + lora_key(site.module, 'A'))->value;
    Tensor b = params_.get(group_ + lora_key(site.module, 'B'))->value;
    const int r = int(a.dim(0));
    if (config_.init_lora_weights == "gaussian") {
      fill_normal(a, rng, 0.0f, 1.0f / float(r));  // PEFT: nn.init.normal_(A, std=1/r)
    } else {  // kaiming_uniform(a=√5): U(−1/√in, 1/√in)
      const float bound = 1.0f / std::sqrt(float(site.in_features));
      fill_uniform(a, rng, -bound, bound);
    }
    if (config_.init_lora_weights == "false") {  // torch's default Linear init for B as well
      const float bound = 1.0f / std::sqrt(float(r));
      fill_uniform(b, rng, -bound, bound);
    } else {
      b.zero();
    }
  }
}

const LoraBranch* LoraMethod::linear_branch(const LinearSite& site) {
  auto it = branches_.find(site.module);
  if (it != branches_.end()) return &it->second;
  const std::string a_key = group_ + lora_key(site.module, 'A');
  if (!params_.contains(a_key)) return nullptr;
  LoraBranch branch;
  branch.A = params_.get(a_key);
  branch.B = params_.get(group_ + lora_key(site.module, 'B'));
  branch.scale =
      lora_scale(config_, int(branch.A->value.dim(0)), lora_alpha_for(config_, site.module));
  branch.dropout = dropout_;
  branch.rng = dropout_rng_;
  return &branches_.emplace(site.module, branch).first->second;
}

// The forward's context decides: lora_dropout while training, none otherwise.
void LoraMethod::begin_forward(const ForwardContext& ctx) {
  dropout_ = ctx.training ? config_.lora_dropout : 0.0f;
  dropout_rng_ = ctx.dropout_rng;
  for (auto& [module, branch] : branches_) {
    branch.dropout = dropout_;
    branch.rng = dropout_rng_;
  }
}

void LoraMethod::declare_biases(const Model& model) {
  for (const auto& [name, key] : lora_bias_keys(config_, targeted_, model.weights()))
    bias_keys_[name] = group_ + key;
  model.declare_trainable(params_, bias_keys_);
}

void LoraMethod::bind(Model& model) {
  model.bind_trainable(params_, bias_keys_);
}

void LoraMethod::save(const std::string& dir) const {
  std::vector<std::pair<std::string, Tensor>> tensors;
  const std::string prefix = group_ + "base_model.model.";
  for (const ParamStore::Entry& e : params_.entries())
    if (e.name.rfind(prefix, 0) == 0)
      tensors.emplace_back(e.name.substr(group_.size()), e.var->value);
  write_peft_folder(dir, config_.to_json(), tensors);
}

void LoraMethod::load(const std::string& dir) {
  load_lora_weights(dir, params_, group_);
}

bool LoraMethod::merges(const std::string& weight_name) const {
  for (const LinearSite& site : targeted_)
    if (site.module + ".weight" == weight_name) return true;
  return false;
}

bool LoraMethod::merge_into(const std::string& weight_name, Tensor& w) const {
  for (const LinearSite& site : targeted_) {
    if (site.module + ".weight" != weight_name) continue;
    const Var& A = params_.get(group_ + lora_key(site.module, 'A'));
    const Var& B = params_.get(group_ + lora_key(site.module, 'B'));
    lora_merge(w, A->value, B->value,
               lora_scale(config_, int(A->value.dim(0)), lora_alpha_for(config_, site.module)));
    return true;
  }
  return false;
}

std::map<std::string, std::string> lora_bias_keys(const LoraConfig& config,
                                                  const std::vector<LinearSite>& targeted,
                                                  const std::map<std::string, Var>& weights) {
  std::map<std::string, std::string> keys;
  if (config.bias == "none") return keys;
  for (const LinearSite& site : targeted)
    if (weights.contains(site.module + ".bias"))
      keys[site.module + ".bias"] = "base_model.model." + site.module + ".base_layer.bias";
  if (config.bias == "all")
    for (const auto& [name, w] : weights)
      if (name.find("bias") != std::string::npos && !keys.contains(name))
        keys[name] = "base_model.model." + name;
  return keys;
}

std::unique_ptr<LoraMethod> attach_lora(Model& model, LoraConfig config, ParamStore& params) {
  auto lora = std::make_unique<LoraMethod>(std::move(config), model.linear_sites(),
                                           model.arch().default_lora_targets, params);
  lora->declare_biases(model);
  params.allocate();
  lora->bind(model);
  return lora;
}

void save_lora_adapter(const std::string& dir, const LoraMethod& lora, const ParamStore& params) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const ParamStore::Entry& e : params.entries())
    if (e.name.rfind("base_model.model.", 0) == 0) tensors.emplace_back(e.name, e.var->value);
  save_safetensors(join_path(dir, "adapter_model.safetensors"), tensors);
  write_json_atomic(join_path(dir, "adapter_config.json"), lora.config().to_json());
}

LoraConfig read_lora_config(const std::string& dir) {
  const std::string path = join_path(dir, "adapter_config.json");
  return LoraConfig::from_json(read_json_file(path), path);
}

void load_lora_weights(const std::string& dir, ParamStore& params, const std::string& group) {
  SafetensorsFile file(join_path(dir, "adapter_model.safetensors"));
  // A bias is stored under the name PEFT's LoRA wrapper gives it or under the plain one.
  auto stored_name = [&](const std::string& key) {
    const std::string wrapped = ".base_layer.bias", plain = ".bias";
    if (file.contains(key) || !key.ends_with(plain)) return key;
    const std::string other = key.ends_with(wrapped)
                                  ? key.substr(0, key.size() - wrapped.size()) + plain
                                  : key.substr(0, key.size() - plain.size()) + wrapped;
    return file.contains(other) ? other : key;
  };
  for (const ParamStore::Entry& e : params.entries()) {
    if (e.name.rfind(group + "base_model.model.", 0) != 0) continue;
    const std::string key = e.name.substr(group.size());
    const std::string name = stored_name(key);
    // A missing bias keeps its base value, as in PEFT (whose 0.12 lora_only saves no bias).
    if (!file.contains(name) && name.find(".lora_") == std::string::npos) continue;
    if (!file.contains(name)) fail("{}: tensor {} is missing", file.path(), key);
    Tensor t = file.get(name);
    if (t.shape() != e.shape)
      fail("{}: tensor {} has shape {}, expected {}", file.path(), name, shape_str(t.shape()),
           shape_str(e.shape));
    e.var->value.copy_from(t.dtype() == DType::F32 ? t : t.to(DType::F32));
  }
  for (const SafetensorInfo& info : file.tensors()) {
    const bool lora_key_like = info.name.find(".lora_A.") != std::string::npos ||
                               info.name.find(".lora_B.") != std::string::npos;
    if (lora_key_like && !params.contains(group + info.name))
      fail(
          "{}: tensor {} targets a module this model does not have (or the config does not target)",
          file.path(), info.name);
  }
}

void lora_merge(Tensor& weight, const Tensor& A, const Tensor& B, float scale, float sign) {
  const int64_t out = weight.dim(0), in = weight.dim(1), r = A.dim(0);
  PEFT_CHECK(A.dim(1) == in && B.dim(0) == out && B.dim(1) == r, "merge {} with A {} B {}",
             weight.describe(), A.describe(), B.describe());
  PEFT_CHECK(weight.writable(), "merge into a read-only (mapped) weight {}", weight.describe());
  Tensor w32 = weight.dtype() == DType::F32 ? weight : weight.to(DType::F32);
  gemm_f32(false, false, out, in, r, sign * scale, B.data<float>(), r, A.data<float>(), in, 1.0f,
           w32.data<float>(), in);
  if (weight.dtype() != DType::F32) weight.copy_from(w32.to(weight.dtype()));
}

}  // namespace peft

namespace peft {

MethodInfo lora_method_info() {
  using T = MethodFlag::Type;
  MethodInfo info;
  info.name = "lora";
  info.peft_type = "LORA";
  info.summary = "LoRA: low-rank updates beside frozen linear layers (mergeable)";
  info.flags = {
      {"r", "r", T::Int, "LoRA rank (default 8)"},
      {"lora-alpha", "lora_alpha", T::Float, "LoRA alpha (default 8); scale = alpha / r"},
      {"lora-dropout", "lora_dropout", T::Float, "dropout on the LoRA input (default 0)"},
      {"target-modules", "target_modules", T::Custom,
       "comma-separated module names (suffix match), a regex, or all-linear (default: per "
       "architecture)",
       [](const std::string& text) -> nlohmann::json {
         if (text == "all-linear" || text.find_first_of("*()[]|\\^$") != std::string::npos)
           return text;  // "all-linear" or a regex
         std::vector<std::string> names;
         std::stringstream ss(text);
         for (std::string n; std::getline(ss, n, ',');)
           if (!n.empty()) names.push_back(n);
         return names;
       }},
      {"lora-bias", "bias", T::String, "none (default), all or lora_only"},
      {"use-rslora", "use_rslora", T::Bool, "scale by alpha / sqrt(r)"},
      {"init-lora-weights", "init_lora_weights", T::Custom, "true (default), gaussian or false",
       [](const std::string& text) -> nlohmann::json {
         if (text == "gaussian") return "gaussian";
         if (text == "true" || text == "false") return text == "true";
         fail("--init-lora-weights: \"{}\" is not true, false or gaussian", text);
       }},
      {"layers-to-transform", "layers_to_transform", T::IntList, "comma-separated layer indices"},
      {"rank-pattern", "rank_pattern", T::Json, "JSON object: module pattern -> rank"},
      {"alpha-pattern", "alpha_pattern", T::Json, "JSON object: module pattern -> alpha"},
  };
  info.help_group = "LoRA";
  info.flags[0].min = 1;                                                        // r ≥ 1
  info.flags[1].min = 0, info.flags[1].min_open = true;                         // alpha > 0
  info.flags[2].min = 0, info.flags[2].max = 1, info.flags[2].max_open = true;  // 0 ≤ p < 1
  info.flags[4].choices = {"none", "all", "lora_only"};
  info.flags[6].choices = {"true", "false", "gaussian"};
  info.create = [](const nlohmann::json& config, const std::string& source,
                   const MethodContext& ctx) -> std::unique_ptr<Method> {
    auto lora = std::make_unique<LoraMethod>(
        LoraConfig::from_json(config, source), ctx.model.linear_sites(),
        ctx.model.arch().default_lora_targets, ctx.params, ctx.group);
    lora->declare_biases(ctx.model);
    return lora;
  };
  return info;
}

}  // namespace peft
