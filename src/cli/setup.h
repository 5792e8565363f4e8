// What several subcommands share: loading a model folder with its tokenizer, attaching adapter
// folders (any method of the registry), peak memory, and YAML run configs.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "autograd/params.h"
#include "models/model.h"
#include "peft/method.h"
#include "tokenizer/tokenizer.h"

namespace peft::cli {

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;  // null when the folder has no tokenizer files
};

// base_dtype "" = as stored.
LoadedModel load_model_folder(const std::string& dir, const std::string& base_dtype);

// Adapter folders attached to a model (for eval / generate / merge / the oracle), stacked in
// order; null when there are none.
std::unique_ptr<MethodSet> attach_adapter_folders(Model& model,
                                                  const std::vector<std::string>& dirs);

// The name a folder goes by: its last path component ("models/qwen-tiny/" -> "qwen-tiny").
std::string folder_name(const std::string& dir);

// This process's peak resident memory in MiB (VmHWM).
double peak_rss_mb();

// peft's default OpenMP spin count (src/cli/openmp_wait.cpp): main() calls
// choose_openmp_wait(argv) first; unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT it
// re-executes the program once with GOMP_SPINCOUNT set (libgomp reads it before main).
// openmp_wait_setting() describes what is in effect, for `peft info --system`.
void choose_openmp_wait(char** argv);
std::string openmp_wait_setting();

// Copies the tokenizer and generation files a model folder holds (tokenizer.json, vocab files,
// tokenizer_config.json, ...) into another folder, atomically each.
void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir);

// Reads a YAML run config (a map of flag names without "--" to values) and appends, for every key
// not already given on the command line, "--key value" to args. Lists become comma-joined
// values; booleans true become bare flags. Errors name the file and key.
void append_yaml_config(const std::string& path, const CLI::App& app,
                        std::vector<std::string>& args);

}  // namespace peft::cli
