// libFuzzer: a YAML run config (--config RUN.yaml) read against a command with a few flags of
// each kind (number, string, list, switch), as `peft train --config` reads it.
#include <CLI/CLI.hpp>

#include "cli/setup.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = peft::fuzz::write_input("run.yaml", data, size);
  CLI::App app{"fuzz", "peft"};
  int64_t steps = 0;
  float lr = 0;
  std::string modules;
  bool packing = false;
  app.add_option("--max-steps", steps);
  app.add_option("--lr", lr);
  app.add_option("--target-modules", modules);
  app.add_flag("--packing", packing);
  app.add_option("--config", modules);
  std::vector<std::string> args{"--lr", "1e-3"};
  return peft::fuzz::run_one([&] { peft::cli::append_yaml_config(path, app, args); });
}
