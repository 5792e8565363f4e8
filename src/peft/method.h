// The method layer (DESIGN.md, "The method layer"): every PEFT method is a `Method` — it declares
// its parameters (one group of the run's ParamStore), initialises or loads them, provides the model
// hooks, saves its adapter folder, and merges where that applies — and one registry row
// (peft/registry.cpp) gives its CLI name, PEFT peft_type, flags and factory. The CLI and the
// library API never name a method: they go through the registry and MethodSet.
//
// A run (MethodSet) declares every method first, allocates the store once, then binds, initialises
// or loads each method. Parameter names are the method's own (PEFT's keys) behind the group prefix
// of its MethodSet slot: "" for the first method, "m1/", "m2/", ... for stacked ones.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "autograd/params.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "models/hooks.h"
#include "models/model.h"

namespace peft {

class Tokenizer;

class Method : public ModelHooks {
 public:
  // The adapter_config.json this method writes (PEFT's fields and defaults).
  virtual nlohmann::json config_json() const = 0;
  // After the store is allocated: makes the model use trainable copies of chosen base weights
  // (LoRA's bias setting). Default: nothing.
  virtual void bind(Model& /*model*/) {}
  // Fresh parameters (PEFT's init). tokenizer may be null (TEXT init then fails).
  virtual void initialize(Rng& rng, const Tokenizer* tokenizer) = 0;
  // The adapter folder PEFT reads (adapter_config.json + adapter_model.safetensors) plus what
  // this method needs to resume training that PEFT does not keep (encoder weights).
  virtual void save(const std::string& dir) const = 0;
  // The names of the files save() writes in its folder, in the order a message lists them.
  virtual std::vector<std::string> saved_files() const {
    return {"adapter_config.json", "adapter_model.safetensors"};
  }
  // Reads the tensors of an adapter folder written by save() or by PEFT.
  virtual void load(const std::string& dir) = 0;
  // Merge (LoRA): the f32 copy w of base weight `name` gets this method's delta added. Methods
  // that cannot be merged into the weights return false from mergeable().
  virtual bool mergeable() const { return false; }
  virtual bool merges(const std::string& /*weight_name*/) const { return false; }
  virtual bool merge_into(const std::string& /*weight_name*/, Tensor& /*w*/) const { return false; }
};

// One flag of a method: the CLI option --name, the config JSON key it sets, and how its text
// becomes a JSON value (the same JSON an adapter_config.json holds, so there is one validation
// path: the method's from_json).
struct MethodFlag {
  enum class Type { Int, Float, Bool, String, IntList, Json, Custom };
  std::string name;  // without "--"
  std::string key;
  Type type = Type::String;
  std::string help;
  std::function<nlohmann::json(const std::string&)> parse = nullptr;  // Type::Custom
  // What the CLI checks before the method sees the value (so `--r 0` reads "--r must be ≥ 1"):
  // a numeric range (absent bound: unbounded; *_open: the bound itself excluded), or the only
  // texts allowed.
  std::optional<double> min{}, max{};
  bool min_open = false, max_open = false;
  std::vector<std::string> choices{};
  std::string group{};  // the --help heading (all_method_flags() fills in the method's)
};

// What a method's factory gets: the model it attaches to, the store it declares in, and its
// group prefix.
struct MethodContext {
  Model& model;
  ParamStore& params;
  std::string group;
  std::string adapter_dir;  // the folder it will load from; empty for a fresh method
};

struct MethodInfo {
  std::string name;        // --method
  std::string peft_type;   // adapter_config.json's peft_type
  std::string summary;     // one line for --help
  std::string help_group;  // the --help heading of its flags ("LoRA", "Prompt learning")
  std::vector<MethodFlag> flags;
  // Parses config (adapter_config.json fields; `source` names it in errors) and declares the
  // method's parameters.
  std::function<std::unique_ptr<Method>(const nlohmann::json& config, const std::string& source,
                                        const MethodContext& ctx)>
      create;
};

// Every method, in the order --help lists them.
const std::vector<MethodInfo>& method_registry();
// The row of --method NAME, or null.
const MethodInfo* find_method(const std::string& name);
// "lora, prompt, ..." (the names, for messages).
std::string method_names();
// The flags of every method, each name once (the CLI registers these).
std::vector<MethodFlag> all_method_flags();
// The config JSON of method `info` from flag texts (flag name -> text as given). Error naming the
// flag when it belongs to no flag of this method or its text does not parse.
nlohmann::json method_config_from_flags(const MethodInfo& info,
                                        const std::map<std::string, std::string>& given);
// The methods of `--method A,B,...` (a comma list; stacked in that order). Error naming the text
// when a name is unknown or repeated.
std::vector<const MethodInfo*> parse_method_list(const std::string& text);
// "lora+prefix": the names of a stack, for titles and messages.
std::string stack_label(const std::vector<const MethodInfo*>& stack);
// The config JSON of each method of a stack from the flags given: every flag goes to each method
// of the stack that has it; a flag that none has is an error naming the stack.
std::vector<nlohmann::json> method_configs_from_flags(
    const std::vector<const MethodInfo*>& stack, const std::map<std::string, std::string>& given);
// Reads DIR/adapter_config.json and tells which method it holds (by peft_type). Error naming the
// folder when it is missing, malformed or of a method this build lacks.
const MethodInfo& method_of_adapter(const std::string& dir, nlohmann::json* config = nullptr);

// Stacked adapters on disk: a folder holding kStackFile is a stack, one sub-folder per adapter
// (each a complete PEFT adapter folder), listed in stacking order:
//   {"adapters": ["lora", "prefix"]}
inline constexpr const char* kStackFile = "adapter_stack.json";
// The adapter folders DIR stands for: DIR itself when it holds adapter_config.json, or the
// sub-folders its adapter_stack.json lists, in order. Error naming DIR otherwise.
std::vector<std::string> adapter_folders(const std::string& dir);

// Continuing training from adapter folders (`--adapter` / `--resume`): the method flags given
// must agree with each folder's config, since the folder's settings are the ones that continue.
// A flag is compared through the method itself (its config as it would write it, with and
// without the flag), so `--r 8` agrees with "r": 8 and `LSTM` with "lstm". Error naming the flag,
// its value, the folder and the folder's value.
void check_flags_agree_with_folders(Model& model, const std::vector<const MethodInfo*>& stack,
                                    const std::vector<nlohmann::json>& folder_configs,
                                    const std::vector<std::string>& folders,
                                    const std::map<std::string, std::string>& given);

// The methods of one run over one model, with their parameter store and hook stack.
class MethodSet {
 public:
  explicit MethodSet(Model& model) : model_(model) {}
  // Declares a method (before allocate()); returns it.
  Method& add(const MethodInfo& info, const nlohmann::json& config, const std::string& source,
              const std::string& adapter_dir = "");
  // Allocates the store once and binds every method.
  void allocate();
  // add() + allocate() + load() for each adapter folder, in order; a stack folder
  // (adapter_folders) stands for its sub-folders.
  void attach_folders(const std::vector<std::string>& dirs);
  // After allocate(): fresh parameters for every method, in order, from one Rng.
  void initialize(Rng& rng, const Tokenizer* tokenizer);
  // One method: its adapter folder in DIR. Several: DIR/<method name>/ for each (a name taken
  // twice gets -2, -3, ...) and DIR/adapter_stack.json listing them.
  void save(const std::string& dir) const;

  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  // Null when no method is attached.
  ModelHooks* hooks() { return methods_.empty() ? nullptr : &stack_; }
  const std::vector<std::unique_ptr<Method>>& methods() const { return methods_; }
  int64_t trainable_count() const;

 private:
  Model& model_;
  ParamStore params_;
  std::vector<std::unique_ptr<Method>> methods_;
  std::vector<std::string> names_;  // each method's registry name
  HookStack stack_;
};

// Helpers for methods.
// A stored tensor checked against its declared shape, as f32 (an error names file and key).
// Throws Error "SOURCE: tensor NAME holds N non-finite values (NaN or inf)" when a parameter of
// `group` (the first method's: "", which excludes the stacked "mK/" groups) is NaN or infinite
// after loading; called after every adapter or checkpoint load.
void check_finite_parameters(const ParamStore& params, const std::string& group,
                             const std::string& source);
Tensor load_adapter_tensor(const SafetensorsFile& file, const std::string& key, const Shape& shape);
// adapter_config.json (sorted keys, indent 2) + adapter_model.safetensors, atomically.
void write_peft_folder(const std::string& dir, const nlohmann::json& config,
                       const std::vector<std::pair<std::string, Tensor>>& tensors);

}  // namespace peft
