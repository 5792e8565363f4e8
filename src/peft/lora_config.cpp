// LoraConfig <-> adapter_config.json (PEFT's LoraConfig fields), apart from the LoRA layers so
// that the fuzz build (fuzz/) parses configs without linking models and kernels.
#include <map>
#include <string>
#include <vector>

#include "peft/config_json.h"
#include "peft/lora.h"

namespace peft {

using config_json::get_or;

LoraConfig LoraConfig::from_json(const nlohmann::json& j, const std::string& source) {
  try {
    LoraConfig c;
    const std::string type = get_or<std::string>(j, source, "peft_type", "");
    if (type != "LORA") fail("{}: peft_type is \"{}\", expected \"LORA\"", source, type);
    c.r = get_or<int>(j, source, "r", 8);
    c.lora_alpha = get_or<float>(j, source, "lora_alpha", 8.0f);
    c.lora_dropout = get_or<float>(j, source, "lora_dropout", 0.0f);
    if (c.r <= 0) fail("{}: \"r\" is {}, expected a positive rank", source, c.r);
    if (auto it = j.find("target_modules"); it != j.end() && !it->is_null()) {
      c.targets_given = true;
      if (it->is_string()) {
        const std::string t = it->get<std::string>();
        if (t == "all-linear")
          c.all_linear = true;
        else
          c.target_regex = t;
      } else {
        c.target_list = it->get<std::vector<std::string>>();
      }
    }
    c.bias = get_or<std::string>(j, source, "bias", "none");
    if (c.bias != "none" && c.bias != "all" && c.bias != "lora_only")
      fail("{}: \"bias\" is \"{}\", expected none, all or lora_only", source, c.bias);
    c.use_rslora = get_or<bool>(j, source, "use_rslora", false);
    if (auto it = j.find("init_lora_weights"); it != j.end() && !it->is_null()) {
      if (it->is_boolean())
        c.init_lora_weights = it->get<bool>() ? "true" : "false";
      else
        c.init_lora_weights = it->get<std::string>();
      if (c.init_lora_weights != "true" && c.init_lora_weights != "false" &&
          c.init_lora_weights != "gaussian")
        fail("{}: init_lora_weights \"{}\" is not supported (true, false or gaussian)", source,
             c.init_lora_weights);
    }
    if (auto it = j.find("layers_to_transform"); it != j.end() && !it->is_null()) {
      if (it->is_number())
        c.layers_to_transform = {config_json::as<int>(*it, source + ": \"layers_to_transform\"")};
      else
        c.layers_to_transform =
            config_json::as<std::vector<int>>(*it, source + ": \"layers_to_transform\"");
    }
    c.rank_pattern = get_or<std::map<std::string, int>>(j, source, "rank_pattern", {});
    c.alpha_pattern = get_or<std::map<std::string, float>>(j, source, "alpha_pattern", {});
    c.base_model_name_or_path = get_or<std::string>(j, source, "base_model_name_or_path", "");
    c.task_type = get_or<std::string>(j, source, "task_type", "CAUSAL_LM");
    if (get_or<bool>(j, source, "use_dora", false)) fail("{}: use_dora is not supported", source);
    if (get_or<bool>(j, source, "fan_in_fan_out", false))
      fail("{}: fan_in_fan_out is true; only [out, in] linear weights are supported", source);
    // Classification heads are modules_to_save the seq-cls objective trains and loads
    // (objectives/seq_cls.cpp); any other module is not supported.
    if (auto it = j.find("modules_to_save"); it != j.end() && it->is_array())
      for (const auto& m : *it)
        if (!m.is_string() || (m != "classifier" && m != "score" && m != "bert.pooler"))
          fail(
              "{}: modules_to_save {} is not supported (only a classification head: classifier, "
              "score)",
              source, m.dump());
    return c;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed LoRA config: {}", source, e.what());
  }
}

nlohmann::json LoraConfig::to_json() const {
  nlohmann::json j;
  j["peft_type"] = "LORA";
  j["task_type"] = task_type;
  j["base_model_name_or_path"] = base_model_name_or_path;
  j["revision"] = nullptr;
  j["inference_mode"] = true;
  j["r"] = r;
  j["lora_alpha"] = lora_alpha;
  j["lora_dropout"] = lora_dropout;
  if (all_linear)
    j["target_modules"] = "all-linear";
  else if (target_regex)
    j["target_modules"] = *target_regex;
  else
    j["target_modules"] = target_list;
  j["bias"] = bias;
  j["fan_in_fan_out"] = false;
  j["use_rslora"] = use_rslora;
  if (init_lora_weights == "gaussian")
    j["init_lora_weights"] = "gaussian";
  else
    j["init_lora_weights"] = init_lora_weights == "true";
  j["layers_to_transform"] =
      layers_to_transform.empty() ? nlohmann::json(nullptr) : nlohmann::json(layers_to_transform);
  j["layers_pattern"] = nullptr;
  j["rank_pattern"] = rank_pattern;
  j["alpha_pattern"] = alpha_pattern;
  j["modules_to_save"] = nullptr;
  j["use_dora"] = false;
  // No "peft_version": PEFT before 0.13 rejects keys it does not know, and none requires it.
  return j;
}

}  // namespace peft
