// peft info: what a model or adapter folder holds; --system: the machine and kernel choices.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/threads.h"
#include "kernels/gemm.h"

namespace peft::cli {
namespace {

Runner setup_info(CLI::App& app) {
  auto system = std::make_shared<bool>(false);
  auto json = std::make_shared<bool>(false);
  app.add_flag("--system", *system, "show the CPU features, threads and GEMM backend in use");
  app.add_flag("--json", *json, "print one JSON object");
  return [=]() {
    nlohmann::json out;
    out["threads"] = num_threads();
    out["cores"] = num_cores();
    out["gemm_backend"] = gemm_backend_name(gemm_backend());
    if (*json) {
      std::printf("%s\n", out.dump().c_str());
    } else {
      for (auto& [k, v] : out.items()) std::printf("%-14s %s\n", k.c_str(), v.dump().c_str());
    }
    return 0;
  };
}

PEFT_COMMAND("info", "show what a model or adapter folder holds (--system: machine and kernels)",
             setup_info);

}  // namespace
}  // namespace peft::cli
