// peft init: a randomly initialised model folder in Hugging Face layout (config.json,
// model.safetensors streamed tensor by tensor, and with --vocab-from the tokenizer files of
// another folder, whose vocabulary size the model then takes).
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/validate.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

struct InitArgs {
  std::string arch, preset, out, dtype = "f32", vocab_from;
  uint64_t seed = 0;
  bool json = false;
};

int run_init(const InitArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  api::InitModelOptions o;
  o.arch = a.arch;
  o.preset = a.preset;
  o.dtype = a.dtype;
  o.seed = a.seed;
  o.vocab_from = a.vocab_from;
  const api::InitModelResult r = api::init_model(a.out, o);
  const std::vector<std::string>& copied = r.tokenizer_files;
  const int64_t params = r.parameters;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::ordered_json out;
  out["out"] = a.out;
  out["model_type"] = r.model_type;
  out["preset"] = a.preset;
  out["dtype"] = a.dtype;
  out["params"] = params;
  out["vocab_size"] = r.vocab_size;
  out["tokenizer_files"] = copied;
  out["seconds"] = seconds;
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("wrote %s: %s preset %s, %lld parameters (%s), %zu tokenizer files, %.1f s\n",
                a.out.c_str(), r.model_type.c_str(), a.preset.c_str(),
                static_cast<long long>(params), a.dtype.c_str(), copied.size(), seconds);
  }
  return 0;
}

Runner setup_init(CLI::App& app) {
  auto a = std::make_shared<InitArgs>();
  app.add_option("--arch", a->arch, "architecture")
      ->required()
      ->check(CLI::IsMember({"qwen2", "llama", "baichuan", "bert"}));
  app.add_option("--preset", a->preset,
                 "tiny, small, qwen2-0.5b, qwen2-7b (qwen2), baichuan-7b (baichuan), bert-base "
                 "(bert)")
      ->required();
  app.add_option("--out", a->out, "output folder (created)")->required()->type_name("DIR");
  app.add_option("--seed", a->seed, "random seed")->check(at_least(0));
  app.add_option("--dtype", a->dtype, "stored dtype")->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--vocab-from", a->vocab_from,
                 "copy this folder's tokenizer files and use its vocabulary size")
      ->type_name("DIR");
  app.add_flag("--json", a->json, "print one JSON object");
  return [a]() {
    const std::vector<std::string> presets = api::model_presets(a->arch);
    bool known = false;
    for (const std::string& p : presets) known |= p == a->preset;
    if (!known) {  // bad usage, not a failed run
      std::string list;
      for (const std::string& p : presets) list += (list.empty() ? "" : ", ") + p;
      std::fprintf(
          stderr, "peft: error: --preset %s is not available for --arch %s (expected one of: %s)\n",
          a->preset.c_str(), a->arch.c_str(), list.c_str());
      return 2;
    }
    return run_init(*a);
  };
}

PEFT_COMMAND("init", "write a randomly initialised model folder (Hugging Face layout)", setup_init);

}  // namespace
}  // namespace peft::cli
