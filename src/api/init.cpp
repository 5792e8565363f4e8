// Random model folders through the public API (`peft init`): a preset's config.json, random
// weights streamed tensor by tensor (models/init.h), and optionally another folder's tokenizer.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "api/impl.h"
#include "io/files.h"
#include "io/hf_config.h"
#include "models/init.h"
#include "models/registry.h"

namespace peft::api {
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

}  // namespace

std::vector<std::string> model_presets(const std::string& arch) {
  return guarded([&] { return arch_for(arch, "--arch").presets; });
}

InitModelResult init_model(const std::string& out_dir, const InitModelOptions& o) {
  return guarded([&] {
    const ArchSpec& arch = arch_for(o.arch, "--arch");
    nlohmann::json cfg = preset_config(arch, o.preset);
    if (!o.vocab_from.empty()) {
      if (!directory_exists(o.vocab_from)) fail("{}: no such folder (--vocab-from)", o.vocab_from);
      cfg["vocab_size"] = vocab_size_of(o.vocab_from);
      const std::string src_cfg = join_path(o.vocab_from, "config.json");
      if (file_exists(src_cfg)) {  // special token ids follow the tokenizer
        const nlohmann::json s = read_json_file(src_cfg);
        for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"})
          if (s.contains(key)) cfg[key] = s[key];
      }
    }
    const HFConfig config = parse_hf_config(cfg, "preset " + o.preset);
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (!directory_exists(out_dir)) fail("{}: cannot create the folder: {}", out_dir, ec.message());
    peft::InitOptions opts;
    opts.seed = o.seed;
    opts.dtype = dtype_from_name(o.dtype);
    InitModelResult out;
    out.model_type = config.model_type;
    out.vocab_size = config.vocab_size;
    out.parameters = write_random_model(config, out_dir, opts);
    if (!o.vocab_from.empty()) {
      for (const char* f : kTokenizerFiles) {
        const std::string src = join_path(o.vocab_from, f);
        if (!file_exists(src)) continue;
        write_file_atomic(join_path(out_dir, f), read_text_file(src));
        out.tokenizer_files.push_back(f);
      }
    }
    return out;
  });
}

}  // namespace peft::api
