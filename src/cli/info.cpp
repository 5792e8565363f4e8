// peft info: what a model or adapter folder holds; --system: the machine and kernel choices.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/folder_info.h"
#include "cli/setup.h"
#include "core/threads.h"
#include "dist/comm.h"
#include "kernels/gemm.h"

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
    if (!dir->empty() && !*system) return print_folder_info(*dir, *json);
    nlohmann::ordered_json out;
    out["threads"] = num_threads();
    out["cores"] = num_cores();
    out["openmp_wait"] = openmp_wait_setting();
    out["gemm_backend"] = gemm_backend_name(gemm_backend());
    out["gemm_bf16_path"] = bf16_path_name(gemm_bf16_path());
    for (const auto& [key, value] : gemm_system_info()) out[key] = value;
    // Data-parallel training (mpirun -np N peft train): the MPI library built in, if any.
    const std::string mpi = dist::mpi_library();
    out["mpi"] = mpi.empty() ? "not built in (one process only)" : mpi;
    if (!mpi.empty()) out["mpi_ranks"] = dist::size();
    if (*json) {
      std::printf("%s\n", out.dump().c_str());
    } else {
      for (auto& [k, v] : out.items()) {
        const std::string text = v.is_string() ? v.get<std::string>() : v.dump();
        std::printf("%-19s %s\n", k.c_str(), text.c_str());
      }
    }
    return 0;
  };
}

PEFT_COMMAND("info", "show what a model or adapter folder holds (--system: machine and kernels)",
             setup_info);

}  // namespace
}  // namespace peft::cli
