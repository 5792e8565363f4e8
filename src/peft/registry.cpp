// One row per method (STYLE.md: "registries, one file each"). Adding a method: its file in
// src/peft/, a row here, its tests.
#include <algorithm>
#include <filesystem>
#include <set>
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


std::vector<const MethodInfo*> parse_method_list(const std::string& text) {
  std::vector<const MethodInfo*> out;
  std::stringstream ss(text);
  for (std::string name; std::getline(ss, name, ',');) {
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t") + 1);
    const MethodInfo* info = find_method(name);
    if (!info)
      fail("--method {}: \"{}\" is not a method (expected one of {}; several joined by commas stack)",
           text, name, method_names());
    for (const MethodInfo* m : out)
      if (m == info) fail("--method {}: {} is named twice", text, name);
    out.push_back(info);
  }
  if (out.empty()) fail("--method \"{}\": no method named", text);
  return out;
}

std::string stack_label(const std::vector<const MethodInfo*>& stack) {
  std::string out;
  for (const MethodInfo* m : stack) out += (out.empty() ? "" : "+") + m->name;
  return out;
}

std::vector<nlohmann::json> method_configs_from_flags(
    const std::vector<const MethodInfo*>& stack, const std::map<std::string, std::string>& given) {
  std::vector<nlohmann::json> out;
  std::set<std::string> used;
  for (const MethodInfo* info : stack) {
    std::map<std::string, std::string> own;
    for (const auto& [name, text] : given)
      for (const MethodFlag& f : info->flags)
        if (f.name == name) {
          own[name] = text;
          used.insert(name);
        }
    out.push_back(method_config_from_flags(*info, own));
  }
  for (const auto& [name, text] : given)
    if (!used.count(name)) fail("--{} does not apply to --method {}", name, stack_label(stack));
  return out;
}

std::vector<std::string> adapter_folders(const std::string& dir) {
  if (!directory_exists(dir)) fail("{}: adapter folder not found", dir);
  if (file_exists(join_path(dir, "adapter_config.json"))) return {dir};
  const std::string stack = join_path(dir, kStackFile);
  if (!file_exists(stack))
    fail("{}: neither adapter_config.json (an adapter) nor {} (stacked adapters) found", dir,
         kStackFile);
  const nlohmann::json j = read_json_file(stack);
  if (!j.is_object() || !j.contains("adapters") || !j["adapters"].is_array() ||
      j["adapters"].empty())
    fail("{}: expected {{\"adapters\": [\"sub-folder\", ...]}}", stack);
  std::vector<std::string> out;
  for (const auto& name : j["adapters"]) {
    if (!name.is_string() || name.get<std::string>().empty() ||
        name.get<std::string>().find('/') != std::string::npos ||
        name.get<std::string>().front() == '.')
      fail("{}: \"adapters\" must list sub-folder names, found {}", stack, name.dump());
    const std::string sub = join_path(dir, name.get<std::string>());
    if (!file_exists(join_path(sub, "adapter_config.json")))
      fail("{}: lists {}, which holds no adapter_config.json", stack, name.get<std::string>());
    out.push_back(sub);
  }
  return out;
}

namespace {

// Equal as adapter configs: numbers by value, lists of names as sets (PEFT writes
// target_modules from a Python set, in any order).
bool same_setting(const nlohmann::json& a, const nlohmann::json& b) {
  auto names = [](const nlohmann::json& j) {
    std::vector<std::string> v;
    for (const auto& x : j) v.push_back(x.is_string() ? x.get<std::string>() : x.dump());
    std::sort(v.begin(), v.end());
    return v;
  };
  if (a.is_array() && b.is_array()) return names(a) == names(b);
  return a == b;
}

}  // namespace

void check_flags_agree_with_folders(Model& model, const std::vector<const MethodInfo*>& stack,
                                    const std::vector<nlohmann::json>& folder_configs,
                                    const std::vector<std::string>& folders,
                                    const std::map<std::string, std::string>& given) {
  PEFT_CHECK(stack.size() == folder_configs.size() && stack.size() == folders.size(),
             "{} methods, {} configs, {} folders", stack.size(), folder_configs.size(),
             folders.size());
  std::set<std::string> used;
  for (size_t i = 0; i < stack.size(); ++i) {
    const MethodInfo& info = *stack[i];
    std::map<std::string, std::string> own;
    for (const auto& [name, text] : given)
      for (const MethodFlag& f : info.flags)
        if (f.name == name) own[name] = text;
    if (own.empty()) continue;
    const std::string source = join_path(folders[i], "adapter_config.json");
    nlohmann::json overlaid = folder_configs[i];
    const nlohmann::json flags = method_config_from_flags(info, own);
    for (const auto& [key, value] : flags.items())
      if (key != "peft_type") overlaid[key] = value;
    // Both through the method itself (declared in a scratch store, never allocated), so each
    // compares as the method would write it.
    ParamStore scratch_a, scratch_b;
    const nlohmann::json kept =
        info.create(folder_configs[i], source, MethodContext{model, scratch_a, "", ""})
            ->config_json();
    const nlohmann::json asked =
        info.create(overlaid, "the method flags", MethodContext{model, scratch_b, "", ""})
            ->config_json();
    for (const auto& [name, text] : own) {
      used.insert(name);
      std::string key;
      for (const MethodFlag& f : info.flags)
        if (f.name == name) key = f.key;
      const nlohmann::json was = kept.contains(key) ? kept[key] : nlohmann::json(nullptr);
      const nlohmann::json now = asked.contains(key) ? asked[key] : nlohmann::json(nullptr);
      if (!same_setting(was, now))
        fail(
            "--{} {}: {} has {} = {}; a folder's settings continue with it (drop --{}, or train "
            "a fresh adapter)",
            name, text, source, key, was.dump(), name);
    }
  }
  for (const auto& [name, text] : given)
    if (!used.count(name))
      fail("--{} does not apply to the {} adapter being continued", name, stack_label(stack));
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
  names_.push_back(info.name);
  return ref;
}

void MethodSet::allocate() {
  params_.allocate();
  for (auto& m : methods_) m->bind(model_);
}

void MethodSet::attach_folders(const std::vector<std::string>& dirs) {
  std::vector<std::string> folders;
  for (const std::string& dir : dirs)
    for (std::string& f : adapter_folders(dir)) folders.push_back(std::move(f));
  for (const std::string& dir : folders) {
    nlohmann::json config;
    const MethodInfo& info = method_of_adapter(dir, &config);
    add(info, config, join_path(dir, "adapter_config.json"), dir);
  }
  allocate();
  for (size_t i = 0; i < folders.size(); ++i) {
    methods_[i]->load(folders[i]);
    check_finite_parameters(params_, i == 0 ? "" : fmt::format("m{}/", i), folders[i]);
  }
}

void MethodSet::initialize(Rng& rng, const Tokenizer* tokenizer) {
  PEFT_CHECK(params_.allocated(), "MethodSet::initialize before allocate()");
  for (auto& m : methods_) m->initialize(rng, tokenizer);
}

void MethodSet::save(const std::string& dir) const {
  PEFT_CHECK(!methods_.empty(), "MethodSet::save with no method");
  // A folder is one adapter or a stack, never both: what an earlier run (--overwrite) left of
  // the other layout goes.
  namespace fs = std::filesystem;
  if (methods_.size() == 1) {
    fs::remove(join_path(dir, kStackFile));
    methods_[0]->save(dir);
    return;
  }
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "prompt_encoder.safetensors"})
    fs::remove(join_path(dir, f));
  std::vector<std::string> subs;
  for (size_t i = 0; i < methods_.size(); ++i) {
    std::string name = names_[i];
    for (int k = 2; std::find(subs.begin(), subs.end(), name) != subs.end(); ++k)
      name = fmt::format("{}-{}", names_[i], k);
    subs.push_back(name);
    const std::string sub = join_path(dir, name);
    fs::create_directories(sub);
    methods_[i]->save(sub);
  }
  write_json_atomic(join_path(dir, kStackFile), nlohmann::json{{"adapters", subs}});
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
