// peft merge: folds a LoRA adapter into the base weights (W += s·B·A, computed in f32) and writes
// a plain Hugging Face model folder that transformers loads unchanged.
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

struct MergeArgs {
  std::string model, adapter, out, dtype;
  bool json = false, overwrite = false;
};

int run_merge(const MergeArgs& a) {
  namespace fs = std::filesystem;
  if (fs::exists(a.out) && !fs::is_empty(a.out) && !a.overwrite)
    throw api::Error("--out " + a.out + ": folder is not empty (use --overwrite to replace it)");
  api::Model model = api::Model::load(a.model);
  model.load_adapters({a.adapter});
  const api::MergeResult r = model.merge(a.out, a.dtype);
  const int64_t merged = r.merged_modules;
  const std::string& dtype = r.dtype;
  if (a.json) {
    nlohmann::ordered_json out{{"out", a.out}, {"merged_modules", merged}, {"dtype", dtype}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::fprintf(stderr, "merged %lld LoRA modules into %s (%s)\n", (long long)merged,
                 a.out.c_str(), dtype.c_str());
  }
  return 0;
}

Runner setup_merge(CLI::App& app) {
  auto a = std::make_shared<MergeArgs>();
  app.add_option("--model", a->model, "base model folder")
      ->required()
      ->type_name("DIR")
      ->group("Model");
  app.add_option("--adapter", a->adapter, "LoRA adapter folder")
      ->required()
      ->type_name("DIR")
      ->group("Model");
  app.add_option("--out", a->out, "output model folder")
      ->required()
      ->type_name("DIR")
      ->group("Output");
  app.add_option("--dtype", a->dtype,
                 "stored dtype of the output: f32 or bf16 (default: the base's)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->group("Output");
  app.add_flag("--overwrite", a->overwrite, "replace a non-empty --out")->group("Output");
  app.add_flag("--json", a->json, "print one JSON object")->group("Output");
  return [a]() { return run_merge(*a); };
}

PEFT_COMMAND("merge", "fold a LoRA adapter into the base weights (a plain HF model folder)",
             setup_merge);

}  // namespace
}  // namespace peft::cli
