// `peft info DIR`: what a model or adapter folder holds, read from its headers and configs only
// (no weights are loaded, so a 7B folder answers at once).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace peft::cli {

// Model folder: architecture, parameter count, dtypes, shapes of the config. Adapter folder
// (PEFT's adapter_config.json or AdapterHub's): method, config, trainable parameter count and,
// when the base model folder is found, its share of the base.
nlohmann::ordered_json folder_info(const std::string& dir);
// Prints folder_info as a table, or as one JSON line; returns the exit status.
int print_folder_info(const std::string& dir, bool json);

}  // namespace peft::cli
