#include "peft/bottleneck_adapter.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>

#include "io/files.h"
#include "io/safetensors.h"
#include "io/torch_pickle.h"
#include "models/registry.h"
#include "ops/activation.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/linear.h"

namespace peft {
namespace {

const char* const kConfigFile = "adapter_config.json";
const char* const kSafeWeights = "adapter.safetensors";
const char* const kPickleWeights = "pytorch_adapter.bin";
const char* const kAdapterHubVersion = "adapters.1.3.0";

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A JSON number or bool given as either (AdapterHub writes Python values; the CLI gives text).
double number_at(const nlohmann::json& v, const std::string& key, const std::string& source) {
  if (!v.is_number()) fail("{}: \"{}\" must be a number, found {}", source, key, v.dump());
  return v.get<double>();
}

bool bool_at(const nlohmann::json& j, const char* key, bool fallback, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    fail("{}: \"{}\" must be true or false, found {}", source, key, it->dump());
  return it->get<bool>();
}

// The two kinds as AdapterHub's SeqBnConfig (Pfeiffer) and DoubleSeqBnConfig (Houlsby) set them.
void apply_kind(BottleneckConfig& c, const std::string& kind, const std::string& source) {
  if (kind == "houlsby" || kind == "double_seq_bn") {
    c.mh_adapter = true, c.output_adapter = true, c.non_linearity = "swish";
    c.original_ln_before = false;
  } else if (kind == "pfeiffer" || kind == "seq_bn") {
    c.mh_adapter = false, c.output_adapter = true, c.non_linearity = "relu";
    c.original_ln_before = true;
  } else {
    fail("{}: adapter kind \"{}\" is not houlsby (double_seq_bn) or pfeiffer (seq_bn)", source,
         kind);
  }
}

// Truncated N(0, std) on [−2·std, 2·std] (torch.nn.init.trunc_normal_ as AdapterHub's "houlsby"
// init calls it): out-of-range draws are drawn again.
void fill_truncated_normal(Tensor& t, Rng& rng, float stddev) {
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    float v = 0;
    do v = rng.normal() * stddev;
    while (std::fabs(v) > 2 * stddev);
    p[i] = v;
  }
}

}  // namespace

BottleneckConfig BottleneckConfig::from_json(const nlohmann::json& file,
                                             const std::string& source) {
  BottleneckConfig c;
  const bool adapterhub = file.contains("config");
  const nlohmann::json& j = adapterhub ? file["config"] : file;
  if (!j.is_object()) fail("{}: \"config\" must be a JSON object", source);
  if (adapterhub) {
    if (file.contains("name") && file["name"].is_string()) c.name = file["name"].get<std::string>();
    const std::string arch = j.value("architecture", std::string("bottleneck"));
    if (arch != "bottleneck")
      fail("{}: AdapterHub architecture \"{}\" is not supported (this build reads bottleneck)",
           source, arch);
    if (!j.contains("mh_adapter") || !j.contains("output_adapter"))
      fail("{}: \"mh_adapter\" and \"output_adapter\" are required", source);
  } else {
    if (j.contains("name")) c.name = j["name"].get<std::string>();
    apply_kind(c, j.value("adapter_kind", std::string("houlsby")), source);
  }
  if (c.name.empty() || c.name.find('.') != std::string::npos)
    fail("{}: adapter name \"{}\" must be non-empty and contain no '.'", source, c.name);
  c.mh_adapter = bool_at(j, "mh_adapter", c.mh_adapter, source);
  c.output_adapter = bool_at(j, "output_adapter", c.output_adapter, source);
  if (!c.mh_adapter && !c.output_adapter)
    fail("{}: mh_adapter and output_adapter are both false: no adapter would be placed", source);
  c.original_ln_before = bool_at(j, "original_ln_before", c.original_ln_before, source);

  if (auto it = j.find("reduction_factor"); it != j.end() && !it->is_null()) {
    if (it->is_object()) {
      for (const auto& [layer, v] : it->items()) {
        c.reduction_factor_map[layer] = number_at(v, "reduction_factor." + layer, source);
        if (c.reduction_factor_map[layer] <= 0)
          fail("{}: reduction_factor.{} must be > 0", source, layer);
      }
    } else {
      c.reduction_factor = number_at(*it, "reduction_factor", source);
      if (c.reduction_factor <= 0) fail("{}: reduction_factor must be > 0", source);
    }
  }
  if (auto it = j.find("non_linearity"); it != j.end() && !it->is_null())
    c.non_linearity = lower(it->get<std::string>());
  try {
    (void)activation_from_name(c.non_linearity);
  } catch (const Error& e) {
    fail("{}: non_linearity: {}", source, e.what());
  }
  c.init_weights = j.value("init_weights", c.init_weights);
  if (c.init_weights == "mam") c.init_weights = "mam_adapter";
  if (c.init_weights != "bert" && c.init_weights != "houlsby" && c.init_weights != "mam_adapter")
    fail("{}: init_weights \"{}\" is not bert, houlsby or mam_adapter", source, c.init_weights);
  if (auto it = j.find("init_weights_seed"); it != j.end()) c.init_weights_seed = *it;

  if (auto it = j.find("residual_before_ln"); it != j.end() && !it->is_null()) {
    if (it->is_boolean())
      c.residual_before_ln = it->get<bool>() ? "true" : "false";
    else if (it->is_string() && it->get<std::string>() == "post_add")
      c.residual_before_ln = "post_add";
    else
      fail("{}: residual_before_ln must be true, false or \"post_add\", found {}", source,
           it->dump());
  }
  if (auto it = j.find("scaling"); it != j.end() && !it->is_null()) {
    if (it->is_number()) {
      std::ostringstream s;
      s << it->get<double>();
      c.scaling = s.str();
    } else if (it->is_string() && (*it == "learned" || *it == "channel")) {
      c.scaling = it->get<std::string>();
    } else {
      fail("{}: scaling must be a number, \"learned\" or \"channel\", found {}", source,
           it->dump());
    }
  }
  if (auto it = j.find("dropout"); it != j.end() && !it->is_null()) {
    c.dropout = number_at(*it, "dropout", source);
    if (c.dropout < 0 || c.dropout >= 1) fail("{}: dropout must be in [0, 1)", source);
  }
  if (auto it = j.find("leave_out"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) fail("{}: leave_out must be a list of layer indices", source);
    for (const auto& v : *it) {
      if (!v.is_number_integer())
        fail("{}: leave_out must hold integers, found {}", source, v.dump());
      c.leave_out.push_back(v.get<int64_t>());
    }
  }
  // AdapterHub options this build does not implement: refused unless at their default.
  const std::vector<std::pair<const char*, nlohmann::json>> unsupported = {
      {"original_ln_after", true}, {"ln_before", false},  {"ln_after", false},
      {"is_parallel", false},      {"use_gating", false}, {"inv_adapter", nullptr},
      {"cross_adapter", false},    {"phm_layer", false},  {"stochastic_depth", 0.0},
  };
  for (const auto& [key, fallback] : unsupported)
    if (auto it = j.find(key); it != j.end() && *it != fallback)
      fail(
          "{}: {} = {} is not supported (this build implements sequential bottleneck adapters "
          "with {} = {})",
          source, key, it->dump(), key, fallback.dump());
  return c;
}

nlohmann::json BottleneckConfig::to_adapterhub() const {
  // Whole factors as integers, as Python writes the 16 of SeqBnConfig.
  auto number = [](double v) -> nlohmann::json {
    if (v == std::floor(v) && std::fabs(v) < 1e15) return int64_t(v);
    return v;
  };
  nlohmann::json rf;
  if (!reduction_factor_map.empty()) {
    rf = nlohmann::json::object();
    for (const auto& [layer, v] : reduction_factor_map) rf[layer] = number(v);
  } else {
    rf = number(reduction_factor);
  }
  nlohmann::json scale;
  if (scaling == "learned" || scaling == "channel")
    scale = scaling;
  else
    scale = std::stod(scaling);
  nlohmann::json j = {
      {"mh_adapter", mh_adapter},
      {"output_adapter", output_adapter},
      {"reduction_factor", rf},
      {"non_linearity", non_linearity},
      {"original_ln_before", original_ln_before},
      {"original_ln_after", true},
      {"ln_before", false},
      {"ln_after", false},
      {"init_weights", init_weights},
      {"init_weights_seed", init_weights_seed},
      {"is_parallel", false},
      {"scaling", scale},
      {"use_gating", false},
      {"adapter_residual_before_ln", false},
      {"inv_adapter", nullptr},
      {"inv_adapter_reduction_factor", nullptr},
      {"cross_adapter", false},
      {"leave_out", leave_out},
      {"dropout", dropout},
      {"phm_layer", false},
      {"phm_dim", 4},
      {"factorized_phm_W", true},
      {"shared_W_phm", false},
      {"shared_phm_rule", true},
      {"factorized_phm_rule", false},
      {"phm_c_init", "normal"},
      {"phm_init_range", 0.0001},
      {"learn_phm", true},
      {"hypercomplex_nonlinearity", "glorot-uniform"},
      {"phm_rank", 1},
      {"phm_bias", true},
      {"stochastic_depth", 0.0},
  };
  if (residual_before_ln == "post_add")
    j["residual_before_ln"] = "post_add";
  else
    j["residual_before_ln"] = residual_before_ln == "true";
  return j;
}

int64_t BottleneckConfig::bottleneck(int64_t layer, int64_t hidden) const {
  double rf = reduction_factor;
  if (!reduction_factor_map.empty()) {
    if (auto it = reduction_factor_map.find(std::to_string(layer));
        it != reduction_factor_map.end())
      rf = it->second;
    else if (auto d = reduction_factor_map.find("default"); d != reduction_factor_map.end())
      rf = d->second;
    else
      fail("reduction_factor gives no value for layer {} and no \"default\"", layer);
  }
  // Python's int(hidden // rf), at least 1 (AdapterHub's Adapter.__init__).
  return std::max<int64_t>(1, int64_t(std::floor(double(hidden) / rf)));
}

bool BottleneckConfig::placed(int64_t layer) const {
  return std::find(leave_out.begin(), leave_out.end(), layer) == leave_out.end();
}

namespace {

class BottleneckAdapter final : public Method {
 public:
  BottleneckAdapter(BottleneckConfig config, const MethodContext& ctx)
      : c_(std::move(config)),
        params_(ctx.params),
        group_(ctx.group),
        act_(activation_from_name(c_.non_linearity)),
        bert_(ctx.model.arch().model_type == "bert"),
        hidden_(ctx.model.config().hidden_size),
        model_type_(ctx.model.arch().model_type),
        model_class_(ctx.model.arch().architecture) {
    const int64_t layers = ctx.model.config().num_hidden_layers;
    for (int64_t l : c_.leave_out)
      if (l < 0 || l >= layers)
        fail("leave_out: layer {} does not exist (the model has layers 0 … {})", l, layers - 1);
    sites_.resize(size_t(layers));
    for (int64_t l = 0; l < layers; ++l) {
      if (!c_.placed(l)) continue;
      const int64_t b = c_.bottleneck(l, hidden_);
      for (Sublayer s : {Sublayer::Attention, Sublayer::FeedForward}) {
        if (!(s == Sublayer::Attention ? c_.mh_adapter : c_.output_adapter)) continue;
        const std::string p = key_prefix(l, s);
        declare(p + "adapter_down.0.weight", {b, hidden_});
        declare(p + "adapter_down.0.bias", {b});
        declare(p + "adapter_up.weight", {hidden_, b});
        declare(p + "adapter_up.bias", {hidden_});
        if (c_.scaling == "learned") declare(p + "scaling", {1});
        if (c_.scaling == "channel") declare(p + "scaling", {hidden_});
        sites_[size_t(l)][s == Sublayer::Attention ? 0 : 1] = p;
      }
    }
  }

  nlohmann::json config_json() const override {
    return {{"config", c_.to_adapterhub()}, {"hidden_size", hidden_},
            {"model_class", model_class_},  {"model_name", ""},
            {"model_type", model_type_},    {"name", c_.name},
            {"version", kAdapterHubVersion}};
  }

  void initialize(Rng& rng, const Tokenizer* /*tokenizer*/) override {
    for (const auto& [key, shape] : declared_) {
      Tensor t = param(key)->value;
      const bool weight = key.ends_with(".weight");
      const bool up = key.find("adapter_up.") != std::string::npos;
      if (key.ends_with("scaling")) {
        std::fill(t.data<float>(), t.data<float>() + t.numel(), 1.0f);  // torch.ones
      } else if (!weight) {
        t.zero();
      } else if (c_.init_weights == "bert") {
        fill_normal(t, rng, 0.0f, 0.02f);
      } else if (c_.init_weights == "houlsby") {
        fill_truncated_normal(t, rng, 1e-2f);
      } else if (up) {  // mam_adapter: zero up-projection, so A = 0 and the model is unchanged
        t.zero();
      } else {  // kaiming_uniform(a = √5): U(−1/√in, 1/√in)
        const float bound = 1.0f / std::sqrt(float(shape[1]));
        fill_uniform(t, rng, -bound, bound);
      }
    }
  }

  void save(const std::string& dir) const override {
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& [key, shape] : declared_) tensors.emplace_back(key, param(key)->value);
    // Both weight files: AdapterHub's load_adapter reads pytorch_adapter.bin by default and
    // adapter.safetensors with use_safetensors=True.
    save_safetensors(join_path(dir, kSafeWeights), tensors);
    write_torch_checkpoint(join_path(dir, kPickleWeights), tensors);
    write_json_atomic(join_path(dir, kConfigFile), config_json());
  }

  std::vector<std::string> saved_files() const override {
    return {kConfigFile, kSafeWeights, kPickleWeights};
  }

  void load(const std::string& dir) override {
    const std::string safe = join_path(dir, kSafeWeights), bin = join_path(dir, kPickleWeights);
    std::map<std::string, Tensor> stored;
    if (file_exists(safe)) {
      const SafetensorsFile file(safe);
      for (const auto& [key, shape] : declared_)
        param(key)->value.copy_from(load_adapter_tensor(file, key, shape));
      return;
    }
    if (!file_exists(bin)) fail("{}: neither {} nor {} found", dir, kSafeWeights, kPickleWeights);
    stored = read_torch_checkpoint(bin);
    for (const auto& [key, shape] : declared_) {
      auto it = stored.find(key);
      if (it == stored.end()) fail("{}: tensor {} is missing", bin, key);
      if (it->second.shape() != shape)
        fail("{}: tensor {} has shape {}, expected {}", bin, key, shape_str(it->second.shape()),
             shape_str(shape));
      param(key)->value.copy_from(it->second.dtype() == DType::F32 ? it->second
                                                                   : it->second.to(DType::F32));
    }
  }

  void begin_forward(const ForwardContext& ctx) override { ctx_ = ctx; }

  Var after_sublayer(int layer, Sublayer which, const Var& h, const Var& x,
                     const SublayerNorm* norm) override {
    if (layer < 0 || size_t(layer) >= sites_.size()) return h;
    const std::string& p = sites_[size_t(layer)][which == Sublayer::Attention ? 0 : 1];
    if (p.empty()) return h;
    Var residual = h;  // residual_before_ln = true
    Var t = h;
    if (c_.original_ln_before) {
      t = add(h, x);
      if (c_.residual_before_ln == "post_add") residual = t;
      if (norm) t = (*norm)(t);
    }
    if (c_.residual_before_ln == "false") residual = t;
    Var a = linear(
        activation(linear(t, param(p + "adapter_down.0.weight"), param(p + "adapter_down.0.bias")),
                   act_),
        param(p + "adapter_up.weight"), param(p + "adapter_up.bias"));
    if (c_.scaling == "channel") {
      a = mul(a, param(p + "scaling"));
    } else if (c_.scaling == "learned") {  // a [.., C] times a [1] parameter: as rows of one
      const Shape shape = a->value.shape();
      a = reshape(mul(reshape(a, {-1, 1}), param(p + "scaling")), shape);
    } else if (const double s = std::stod(c_.scaling); s != 1.0) {
      a = scale(a, float(s));
    }
    if (ctx_.training && c_.dropout > 0) {
      PEFT_CHECK(ctx_.dropout_rng != nullptr, "adapter dropout needs the forward's RNG");
      a = dropout(a, float(c_.dropout), *ctx_.dropout_rng);
    }
    return add(a, residual);
  }

 private:
  // AdapterHub's module path of the adapter after sublayer `s` of layer l.
  std::string key_prefix(int64_t l, Sublayer s) const {
    const bool attn = s == Sublayer::Attention;
    if (bert_)
      return fmt::format("bert.encoder.layer.{}.{}output.adapters.{}.", l, attn ? "attention." : "",
                         c_.name);
    return fmt::format("model.layers.{}.{}_adapters.adapters.{}.", l, attn ? "attention" : "output",
                       c_.name);
  }
  void declare(const std::string& key, Shape shape) {
    params_.declare(group_ + key, shape);
    declared_.emplace_back(key, std::move(shape));
  }
  const Var& param(const std::string& key) const { return params_.get(group_ + key); }

  BottleneckConfig c_;
  ParamStore& params_;
  std::string group_;
  Activation act_;
  bool bert_;
  int64_t hidden_;
  std::string model_type_, model_class_;
  std::vector<std::pair<std::string, Shape>> declared_;
  std::vector<std::array<std::string, 2>> sites_;  // per layer: attention, FFN key prefix or ""
  ForwardContext ctx_;
};

}  // namespace

MethodInfo bottleneck_adapter_method_info() {
  using T = MethodFlag::Type;
  MethodInfo info;
  info.name = "adapter";
  info.peft_type = "ADAPTERHUB_BOTTLENECK";  // no PEFT type: AdapterHub folders have none
  info.summary =
      "bottleneck adapters (AdapterHub Houlsby / Pfeiffer): small MLPs after sublayers (not "
      "mergeable)";
  info.help_group = "Bottleneck adapter";
  info.flags = {
      {"adapter-kind", "adapter_kind", T::String,
       "houlsby (default: after attention and FFN, swish) or pfeiffer (after the FFN, relu)"},
      {"reduction-factor", "reduction_factor", T::Custom,
       "hidden / bottleneck (default 16), or a JSON map such as '{\"0\": 8, \"default\": 16}'",
       [](const std::string& text) -> nlohmann::json {
         if (!text.empty() && text.front() == '{') {
           nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
           if (j.is_discarded() || !j.is_object())
             fail("--reduction-factor: '{}' is not a JSON object", text);
           return j;
         }
         size_t used = 0;
         double v = 0;
         try {
           v = std::stod(text, &used);
         } catch (const std::exception&) {
           used = 0;
         }
         if (used == 0 || used != text.size() || !(v > 0))
           fail("--reduction-factor: expected a number > 0 or a JSON map, found '{}'", text);
         return v;
       }},
      {"non-linearity", "non_linearity", T::String,
       "relu, swish / silu, gelu, gelu_new or tanh (default: the kind's)"},
      {"adapter-init", "init_weights", T::String,
       "bert (default: N(0, 0.02)), houlsby (truncated N(0, 0.01)) or mam_adapter (zero "
       "up-projection: exact identity)"},
      {"leave-out", "leave_out", T::IntList, "comma-separated layers that get no adapter"},
      {"residual-before-ln", "residual_before_ln", T::Custom,
       "true (default), false or post_add: where the adapter's own skip connection starts",
       [](const std::string& text) -> nlohmann::json {
         if (text == "post_add") return "post_add";
         return text == "true";
       }},
      {"original-ln-before", "original_ln_before", T::Bool,
       "add the residual (and apply the model's LayerNorm) before the adapter (default: the "
       "kind's)"},
      {"adapter-scaling", "scaling", T::Custom,
       "a number (default 1.0), learned (one trained scalar) or channel (one per hidden unit)",
       [](const std::string& text) -> nlohmann::json {
         if (text == "learned" || text == "channel") return text;
         size_t used = 0;
         double v = 0;
         try {
           v = std::stod(text, &used);
         } catch (const std::exception&) {
           used = 0;
         }
         if (used == 0 || used != text.size())
           fail("--adapter-scaling: expected a number, learned or channel, found '{}'", text);
         return v;
       }},
      {"adapter-dropout", "dropout", T::Float, "dropout on the adapter's output (default 0)"},
      {"adapter-name", "name", T::String,
       "AdapterHub's adapter name, part of every weight key (default adapter)"},
  };
  info.flags[0].choices = {"houlsby", "pfeiffer"};
  info.flags[2].choices = {"relu", "swish", "silu", "gelu", "gelu_new", "tanh"};
  info.flags[3].choices = {"bert", "houlsby", "mam_adapter"};
  info.flags[5].choices = {"true", "false", "post_add"};
  info.flags[8].min = 0, info.flags[8].max = 1, info.flags[8].max_open = true;
  info.create = [](const nlohmann::json& config, const std::string& source,
                   const MethodContext& ctx) -> std::unique_ptr<Method> {
    return std::make_unique<BottleneckAdapter>(BottleneckConfig::from_json(config, source), ctx);
  };
  return info;
}

}  // namespace peft
