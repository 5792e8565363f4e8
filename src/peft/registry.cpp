// One row per method (STYLE.md: "registries, one file each"). Adding a method: its file in
// src/peft/, a row here, its tests.
#include <sstream>

#include "core/finite.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "peft/bottleneck_adapter.h"
#include "peft/lora.h"
#include "peft/method.h"
#include "peft/prompt_learning.h"

namespace peft {

const std::vector<MethodInfo>& method_registry() {
  static const std::vector<MethodInfo> rows = {
      lora_method_info(),   prompt_tuning_method_info(), p_tuning_method_info(),
      prefix_method_info(), ptuning_v2_method_info(),    bottleneck_adapter_method_info(),
  };
  return rows;
}

const MethodInfo* find_method(const std::string& name) {
  for (const MethodInfo& m : method_registry())
    if (m.name == name) return &m;
  return nullptr;
}

std::string method_names() {
  std::string out;
  for (const MethodInfo& m : method_registry()) out += (out.empty() ? "" : ", ") + m.name;
  return out;
}

std::vector<MethodFlag> all_method_flags() {
  std::vector<MethodFlag> out;
  for (const MethodInfo& m : method_registry())
    for (const MethodFlag& f : m.flags) {
      bool seen = false;
      for (const MethodFlag& o : out) seen = seen || o.name == f.name;
      if (seen) continue;
      out.push_back(f);
      if (out.back().group.empty()) out.back().group = m.help_group;
    }
  return out;
}

namespace {

nlohmann::json parse_flag(const MethodFlag& f, const std::string& text) {
  using T = MethodFlag::Type;
  const std::string flag = "--" + f.name;
  try {
    switch (f.type) {
      case T::Int: {
        size_t used = 0;
        const long long v = std::stoll(text, &used);
        if (used != text.size()) throw std::invalid_argument(text);
        return v;
      }
      case T::Float: {
        size_t used = 0;
        const double v = std::stod(text, &used);
        if (used != text.size()) throw std::invalid_argument(text);
        return v;
      }
      case T::Bool:
        return text != "false" && text != "0";
      case T::String:
        return text;
      case T::IntList: {
        std::vector<long long> v;
        std::stringstream ss(text);
        for (std::string n; std::getline(ss, n, ',');) v.push_back(std::stoll(n));
        return v;
      }
      case T::Json: {
        nlohmann::json p = nlohmann::json::parse(text);
        if (!p.is_object()) throw std::invalid_argument(text);
        return p;
      }
      case T::Custom:
        return f.parse(text);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception&) {
  }
  const char* what = f.type == T::Int       ? "an integer"
                     : f.type == T::Float   ? "a number"
                     : f.type == T::IntList ? "comma-separated integers"
                     : f.type == T::Json    ? "a JSON object such as '{\"v_proj\": 4}'"
                                            : "a valid value";
  fail("{}: expected {}, found '{}'", flag, what, text);
}

}  // namespace

nlohmann::json method_config_from_flags(const MethodInfo& info,
                                        const std::map<std::string, std::string>& given) {
  nlohmann::json j{{"peft_type", info.peft_type}};
  for (const auto& [name, text] : given) {
    const MethodFlag* flag = nullptr;
    for (const MethodFlag& f : info.flags)
      if (f.name == name) flag = &f;
    if (!flag) fail("--{} does not apply to --method {}", name, info.name);
    j[flag->key] = parse_flag(*flag, text);
  }
  return j;
}

const MethodInfo& method_of_adapter(const std::string& dir, nlohmann::json* config) {
  if (!directory_exists(dir)) fail("{}: adapter folder not found", dir);
  const std::string path = join_path(dir, "adapter_config.json");
  if (!file_exists(path)) fail("{}: no adapter_config.json (not a PEFT adapter folder)", dir);
  nlohmann::json j = read_json_file(path);
  // AdapterHub folders have no peft_type: a nested "config" whose architecture is a bottleneck.
  const bool adapterhub =
      j.is_object() && !j.contains("peft_type") && j.contains("config") && j["config"].is_object();
  if (!adapterhub && (!j.is_object() || !j.contains("peft_type") || !j["peft_type"].is_string()))
    fail("{}: \"peft_type\" (PEFT) or \"config\" (AdapterHub) is missing", path);
  const std::string type =
      adapterhub ? bottleneck_adapter_method_info().peft_type : j["peft_type"].get<std::string>();
  for (const MethodInfo& m : method_registry())
    if (m.peft_type == type) {  // the first row of a peft_type reads it (prefix before ptuning-v2)
      if (config) *config = std::move(j);
      return m;
    }
  fail("{}: peft_type \"{}\" is not supported (this build reads {})", path, type, [] {
    std::string s;
    for (const MethodInfo& m : method_registry())
      if (s.find(m.peft_type) == std::string::npos) s += (s.empty() ? "" : ", ") + m.peft_type;
    return s;
  }());
}

Method& MethodSet::add(const MethodInfo& info, const nlohmann::json& config,
                       const std::string& source, const std::string& adapter_dir) {
  PEFT_CHECK(!params_.allocated(), "MethodSet::add after allocate()");
  const std::string group = methods_.empty() ? "" : fmt::format("m{}/", methods_.size());
  MethodContext ctx{model_, params_, group, adapter_dir};
  std::unique_ptr<Method> m = info.create(config, source, ctx);
  Method& ref = *m;
  stack_.add(std::shared_ptr<ModelHooks>(m.get(), [](ModelHooks*) {}));
  methods_.push_back(std::move(m));
  return ref;
}

void MethodSet::allocate() {
  params_.allocate();
  for (auto& m : methods_) m->bind(model_);
}

void MethodSet::attach_folders(const std::vector<std::string>& dirs) {
  for (const std::string& dir : dirs) {
    nlohmann::json config;
    const MethodInfo& info = method_of_adapter(dir, &config);
    add(info, config, join_path(dir, "adapter_config.json"), dir);
  }
  allocate();
  for (size_t i = 0; i < dirs.size(); ++i) {
    methods_[i]->load(dirs[i]);
    check_finite_parameters(params_, i == 0 ? "" : fmt::format("m{}/", i), dirs[i]);
  }
}

void check_finite_parameters(const ParamStore& params, const std::string& group,
                             const std::string& source) {
  std::string first;
  int64_t tensors = 0;
  for (const ParamStore::Entry& e : params.entries()) {
    if (e.name.rfind(group, 0) != 0) continue;
    if (!group.empty() || e.name.find('/') == std::string::npos) {
      const int64_t bad = count_non_finite(e.var->value);
      if (bad == 0) continue;
      if (tensors++ == 0)
        first = fmt::format("tensor {} holds {} non-finite value{} (NaN or inf)",
                            e.name.substr(group.size()), bad, bad > 1 ? "s" : "");
    }
  }
  if (tensors == 1) fail("{}: {}", source, first);
  if (tensors > 1) fail("{}: {} (and {} more tensors with NaN or inf)", source, first, tensors - 1);
}

int64_t MethodSet::trainable_count() const {
  int64_t n = 0;
  for (const auto& e : params_.entries()) n += e.numel;
  return n;
}

Tensor load_adapter_tensor(const SafetensorsFile& file, const std::string& key,
                           const Shape& shape) {
  if (!file.contains(key)) fail("{}: tensor {} is missing", file.path(), key);
  Tensor t = file.get(key);
  if (t.shape() != shape)
    fail("{}: tensor {} has shape {}, expected {}", file.path(), key, shape_str(t.shape()),
         shape_str(shape));
  return t.dtype() == DType::F32 ? t : t.to(DType::F32);
}

void write_peft_folder(const std::string& dir, const nlohmann::json& config,
                       const std::vector<std::pair<std::string, Tensor>>& tensors) {
  save_safetensors(join_path(dir, "adapter_model.safetensors"), tensors);
  write_json_atomic(join_path(dir, "adapter_config.json"), config);
}

}  // namespace peft
