// peft init: a randomly initialised model folder in Hugging Face layout (config.json,
// model.safetensors streamed tensor by tensor, and with --vocab-from the tokenizer files of
// another folder, whose vocabulary size the model then takes).
#include <chrono>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/validate.h"
#include "core/error.h"
#include "io/files.h"
#include "io/hf_config.h"
#include "models/init.h"
#include "models/registry.h"

namespace peft::cli {
namespace {

namespace fs = std::filesystem;

// Files a tokenizer may consist of (any that exist are copied).
const char* const kTokenizerFiles[] = {"tokenizer.json",
                                       "tokenizer_config.json",
                                       "tokenizer.model",
                                       "vocab.txt",
                                       "vocab.json",
                                       "merges.txt",
                                       "special_tokens_map.json",
                                       "added_tokens.json",
                                       "generation_config.json"};

// The vocabulary size of a folder: its config.json's vocab_size, else the tokenizer's size.
int64_t vocab_size_of(const std::string& dir) {
  const std::string cfg = join_path(dir, "config.json");
  if (file_exists(cfg)) {
    const nlohmann::json j = read_json_file(cfg);
    if (j.contains("vocab_size") && j["vocab_size"].is_number_integer())
      return j["vocab_size"].get<int64_t>();
  }
  const std::string tj = join_path(dir, "tokenizer.json");
  if (file_exists(tj)) {  // largest id of the model vocabulary and the added tokens, plus one
    const nlohmann::json j = read_json_file(tj);
    int64_t n = 0;
    if (j.contains("model") && j["model"].contains("vocab") && j["model"]["vocab"].is_object())
      for (const auto& [k, v] : j["model"]["vocab"].items())
        if (v.is_number_integer()) n = std::max(n, v.get<int64_t>() + 1);
    if (j.contains("added_tokens") && j["added_tokens"].is_array())
      for (const nlohmann::json& t : j["added_tokens"])
        if (t.contains("id") && t["id"].is_number_integer())
          n = std::max(n, t["id"].get<int64_t>() + 1);
    if (n > 0) return n;
  }
  const std::string vt = join_path(dir, "vocab.txt");
  if (file_exists(vt)) {
    const std::string text = read_text_file(vt);
    int64_t lines = 0;
    for (char ch : text) lines += ch == '\n';
    if (!text.empty() && text.back() != '\n') ++lines;
    if (lines > 0) return lines;
  }
  fail(
      "{}: cannot tell the vocabulary size (expected config.json with vocab_size, tokenizer.json "
      "or vocab.txt)",
      dir);
}

struct InitArgs {
  std::string arch, preset, out, dtype = "f32", vocab_from;
  uint64_t seed = 0;
  bool json = false;
};

int run_init(const InitArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const ArchSpec& arch = arch_for(a.arch, "--arch");
  nlohmann::json cfg = preset_config(arch, a.preset);
  if (!a.vocab_from.empty()) {
    if (!directory_exists(a.vocab_from)) fail("{}: no such folder (--vocab-from)", a.vocab_from);
    cfg["vocab_size"] = vocab_size_of(a.vocab_from);
    const std::string src_cfg = join_path(a.vocab_from, "config.json");
    if (file_exists(src_cfg)) {  // special token ids follow the tokenizer
      const nlohmann::json s = read_json_file(src_cfg);
      for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"})
        if (s.contains(key)) cfg[key] = s[key];
    }
  }
  const HFConfig config = parse_hf_config(cfg, "preset " + a.preset);
  std::error_code ec;
  fs::create_directories(a.out, ec);
  if (!directory_exists(a.out)) fail("{}: cannot create the folder: {}", a.out, ec.message());
  InitOptions opts;
  opts.seed = a.seed;
  opts.dtype = dtype_from_name(a.dtype);
  const int64_t params = write_random_model(config, a.out, opts);
  std::vector<std::string> copied;
  if (!a.vocab_from.empty()) {
    for (const char* f : kTokenizerFiles) {
      const std::string src = join_path(a.vocab_from, f);
      if (!file_exists(src)) continue;
      write_file_atomic(join_path(a.out, f), read_text_file(src));
      copied.push_back(f);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::ordered_json out;
  out["out"] = a.out;
  out["model_type"] = config.model_type;
  out["preset"] = a.preset;
  out["dtype"] = a.dtype;
  out["params"] = params;
  out["vocab_size"] = config.vocab_size;
  out["tokenizer_files"] = copied;
  out["seconds"] = seconds;
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("wrote %s: %s preset %s, %lld parameters (%s), %zu tokenizer files, %.1f s\n",
                a.out.c_str(), config.model_type.c_str(), a.preset.c_str(),
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
    const ArchSpec& arch = arch_for(a->arch, "--arch");
    bool known = false;
    for (const std::string& p : arch.presets) known |= p == a->preset;
    if (!known) {  // bad usage, not a failed run
      std::string list;
      for (const std::string& p : arch.presets) list += (list.empty() ? "" : ", ") + p;
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
