// The architecture registry: one row per config.json model_type (models/registry.cpp). A row
// says how to read the config (HF defaults live in io/hf_config), which tensors a checkpoint must
// hold with which shapes, how stored names map to ours (BERT's optional "bert." prefix and
// gamma/beta), the linear sites with their HF module names, the default LoRA targets, the
// presets `peft init` writes, and the builder. Adding an architecture = a family function set in
// models/<family>.cpp plus one row here.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/hf_config.h"
#include "models/hooks.h"

namespace peft {

class Model;

// A tensor the architecture expects, by canonical HF name.
struct TensorSpec {
  std::string name;
  Shape shape;
  // How `peft init` fills it, as transformers' _init_weights does: normal(0, initializer_range)
  // for matrices and embeddings, 1 for norm weights, 0 for biases.
  enum class Init { Normal, Ones, Zeros } init = Init::Normal;
  // Embedding row zeroed at init (padding_idx); −1 for none.
  int64_t zero_row = -1;
};

struct ArchSpec {
  std::string model_type;    // "qwen2", "llama", "baichuan", "bert"
  std::string architecture;  // the class `peft init` writes into config.json
  bool causal_lm = true;     // objective: next token (decoders) or masked LM (BERT)
  // PEFT's default target_modules for LoRA (baichuan: none in PEFT; we use W_pack).
  std::vector<std::string> default_lora_targets;
  std::vector<std::string> presets;  // names `peft init --preset` accepts for this type

  std::vector<TensorSpec> (*tensors)(const HFConfig&);
  std::vector<LinearSite> (*linear_sites)(const HFConfig&);
  // Canonical name of a stored tensor; "" for a tensor the architecture knows and ignores
  // (rotary inv_freq buffers, BERT's pooler / next-sentence head / position_ids, a tied
  // duplicate of the embeddings).
  std::string (*canonical_name)(const std::string& stored, const HFConfig&);
  std::unique_ptr<Model> (*build)(HFConfig, const ArchSpec&, std::map<std::string, Tensor>);
};

// Every row, in a fixed order (qwen2, llama, baichuan, bert).
const std::vector<ArchSpec>& architectures();
// The row for a model_type; Error naming `source` and the supported types when there is none.
const ArchSpec& arch_for(const std::string& model_type, const std::string& source = "config.json");

// config.json of a preset for an architecture (HF field names; `peft init` adds torch_dtype and
// writes it). Error when the preset is unknown for that architecture.
nlohmann::json preset_config(const ArchSpec& arch, const std::string& preset);

}  // namespace peft
