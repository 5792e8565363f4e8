// peft merge: folds a LoRA adapter into the base weights (W += s·B·A, computed in f32) and writes
// a plain Hugging Face model folder that transformers loads unchanged.
#include <cstdio>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/setup.h"
#include "io/files.h"
#include "io/safetensors.h"

namespace peft::cli {
namespace {

struct MergeArgs {
  std::string model, adapter, out, dtype;
  bool json = false, overwrite = false;
};

int run_merge(const MergeArgs& a) {
  namespace fs = std::filesystem;
  if (fs::exists(a.out) && !fs::is_empty(a.out) && !a.overwrite)
    fail("--out {}: folder is not empty (use --overwrite to replace it)", a.out);
  LoadedModel loaded = load_model_folder(a.model, "");
  Model& model = *loaded.model;
  std::unique_ptr<MethodSet> methods = attach_adapter_folders(model, {a.adapter});
  for (const auto& m : methods->methods())
    if (!m->mergeable())
      fail(
          "{}: {} adapters cannot be folded into the weights, nothing was written (only LoRA "
          "merges)",
          a.adapter, method_of_adapter(a.adapter).name);
  const std::string base_dtype = model.config().torch_dtype == "bfloat16" ? "bf16" : "f32";
  const DType out_dtype = dtype_from_name(a.dtype.empty() ? base_dtype : a.dtype);

  // The trained biases (PEFT's bias setting) are already the model's weights.
  std::set<std::string> merged;
  for (const LinearSite& site : model.linear_sites())
    for (const auto& m : methods->methods())
      if (m->merges(site.module + ".weight")) merged.insert(site.module + ".weight");
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, var] : model.weights()) {
    // Every tensor in the output dtype, as transformers' save_pretrained does.
    const Tensor stored = var->value;
    tensors.push_back({name, out_dtype, stored.shape(), [&, name = name, stored]() {
                         Tensor w = stored.to(DType::F32);
                         if (merged.count(name))
                           for (const auto& m : methods->methods()) m->merge_into(name, w);
                         return out_dtype == DType::F32 ? w : w.to(out_dtype);
                       }});
  }
  fs::create_directories(a.out);
  write_safetensors(join_path(a.out, "model.safetensors"), tensors);
  nlohmann::json config = hf_config_to_json(model.config());
  config["torch_dtype"] = out_dtype == DType::BF16 ? "bfloat16" : "float32";
  write_json_atomic(join_path(a.out, "config.json"), config);
  copy_tokenizer_files(a.model, a.out);
  if (a.json) {
    nlohmann::ordered_json out{
        {"out", a.out}, {"merged_modules", merged.size()}, {"dtype", dtype_name(out_dtype)}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::fprintf(stderr, "merged %zu LoRA modules into %s (%s)\n", merged.size(), a.out.c_str(),
                 dtype_name(out_dtype));
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
