// peft export: a model, a merged model or a LoRA adapter as a GGUF file llama.cpp loads (through
// the public API, include/peft/peft.hpp).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

struct ExportArgs {
  std::string model, adapter, format = "gguf", out, dtype, base_dtype;
  bool merge = false, json = false;
};

int run_export(const ExportArgs& a) {
  if (a.merge && a.adapter.empty()) {
    std::fprintf(stderr, "peft: error: --merge needs --adapter DIR (the adapter to fold in)\n");
    return 2;
  }
  api::Model model = api::Model::load(a.model);
  if (!a.adapter.empty()) model.load_adapters({a.adapter});
  api::ExportOptions o;
  o.dtype = a.dtype;
  o.merge = a.merge;
  const api::ExportResult r = model.export_gguf(a.out, o);
  if (a.json) {
    nlohmann::ordered_json out{{"out", a.out},
                               {"format", a.format},
                               {"kind", r.kind},
                               {"dtype", r.dtype},
                               {r.kind == "adapter" ? "lora_pairs" : "merged_modules", r.tensors}};
    std::printf("%s\n", out.dump().c_str());
  } else if (r.kind == "adapter") {
    std::fprintf(stderr, "wrote %s: a llama.cpp LoRA adapter (%lld weights, %s)\n", a.out.c_str(),
                 (long long)r.tensors, r.dtype.c_str());
  } else {
    std::fprintf(
        stderr, "wrote %s: a llama.cpp model (%s%s)\n", a.out.c_str(), r.dtype.c_str(),
        a.merge ? (", " + std::to_string(r.tensors) + " LoRA modules merged").c_str() : "");
  }
  return 0;
}

Runner setup_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  app.add_option("--model", a->model, "base model folder (Hugging Face layout)")
      ->required()
      ->type_name("DIR")
      ->group("Model");
  app.add_option("--adapter", a->adapter,
                 "LoRA adapter folder: written as a llama.cpp adapter, or folded in with --merge")
      ->type_name("DIR")
      ->group("Model");
  app.add_flag("--merge", a->merge, "write the model with --adapter folded into its weights")
      ->group("Model");
  app.add_option("--format", a->format, "output format")
      ->check(CLI::IsMember({"gguf"}))
      ->default_str("gguf")
      ->group("Output");
  app.add_option("--out", a->out, "output file")->required()->type_name("FILE")->group("Output");
  app.add_option("--dtype", a->dtype,
                 "stored dtype: f32, bf16 or q8_0 for a model (default: the base's), f32 or bf16 "
                 "for an adapter (default: f32)")
      ->check(CLI::IsMember({"f32", "bf16", "q8_0"}))
      ->group("Output");
  app.add_flag("--json", a->json, "print one JSON object")->group("Output");
  return [a]() { return run_export(*a); };
}

PEFT_COMMAND("export", "write a model or LoRA adapter as GGUF for llama.cpp", setup_export);

}  // namespace
}  // namespace peft::cli
