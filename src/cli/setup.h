// What several subcommands share: peak memory and YAML run configs. Loading models and adapters
// is the public API's (include/peft/peft.hpp).
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

namespace peft::cli {

// This process's peak resident memory in MiB (VmHWM).
double peak_rss_mb();

// Reads a YAML run config (a map of flag names without "--" to values) and appends, for every key
// not already given on the command line, "--key value" to args. Lists become comma-joined
// values; booleans true become bare flags. Errors name the file and key.
void append_yaml_config(const std::string& path, const CLI::App& app,
                        std::vector<std::string>& args);

}  // namespace peft::cli
