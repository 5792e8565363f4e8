// What several subcommands share: loading a model folder with its tokenizer, attaching a LoRA
// adapter folder, peak memory, and YAML run configs.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "autograd/params.h"
#include "models/model.h"
#include "peft/lora.h"
#include "tokenizer/tokenizer.h"

namespace peft::cli {

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;  // null when the folder has no tokenizer files
};

// base_dtype "" = as stored.
LoadedModel load_model_folder(const std::string& dir, const std::string& base_dtype);

// A LoRA adapter folder attached to a model (for eval / generate / merge).
struct AttachedLora {
  ParamStore params;
  std::unique_ptr<LoraMethod> lora;
};
std::unique_ptr<AttachedLora> attach_lora_folder(Model& model, const std::string& adapter_dir);

// The name a folder goes by: its last path component ("models/qwen-tiny/" -> "qwen-tiny").
std::string folder_name(const std::string& dir);

// This process's peak resident memory in MiB (VmHWM).
double peak_rss_mb();

// Copies the tokenizer and generation files a model folder holds (tokenizer.json, vocab files,
// tokenizer_config.json, ...) into another folder, atomically each.
void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir);

// Reads a YAML run config (a map of flag names without "--" to values) and appends, for every key
// not already given on the command line, "--key value" to args. Lists become comma-joined
// values; booleans true become bare flags. Errors name the file and key.
void append_yaml_config(const std::string& path, const CLI::App& app,
                        std::vector<std::string>& args);

}  // namespace peft::cli
