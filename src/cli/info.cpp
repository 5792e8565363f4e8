// peft info: what a model or adapter folder holds; --system: the machine and kernel choices.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

Runner setup_info(CLI::App& app) {
  auto system = std::make_shared<bool>(false);
  auto json = std::make_shared<bool>(false);
  app.add_flag("--system", *system,
               "show the CPU features, threads and GEMM backends in use (overrides: PEFT_GEMM, "
               "PEFT_GEMM_BF16)");
  app.add_flag("--json", *json, "print one JSON object");
  auto dir = std::make_shared<std::string>();
  auto model = std::make_shared<std::string>();
  app.add_option("dir", *dir, "a model or adapter folder (or --model DIR)")->type_name("DIR");
  app.add_option("--model", *model, "a model or adapter folder (the same as DIR)")
      ->type_name("DIR");
  return [=]() {
    if (!model->empty()) {  // --model DIR, as every other command names the model
      if (!dir->empty() && *dir != *model) {
        std::fprintf(stderr, "peft: error: give the folder once: DIR or --model DIR\n");
        return 2;
      }
      *dir = *model;
    }
    // One JSON object: a folder's contents (no weights loaded), or the machine and kernels.
    const nlohmann::ordered_json out = nlohmann::ordered_json::parse(
        !dir->empty() && !*system ? api::folder_info_json(*dir) : api::system_info_json());
    const int width = !dir->empty() && !*system ? 24 : 19;
    if (*json) {
      std::printf("%s\n", out.dump().c_str());
    } else {
      for (auto& [k, v] : out.items()) {
        const std::string text = v.is_string() ? v.get<std::string>() : v.dump();
        std::printf("%-*s %s\n", width, k.c_str(), text.c_str());
      }
    }
    return 0;
  };
}

PEFT_COMMAND("info", "show what a model or adapter folder holds (--system: machine and kernels)",
             setup_info);

}  // namespace
}  // namespace peft::cli
