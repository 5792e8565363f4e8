// The process-wide calls of the public API: interrupts, MPI ranks, what a folder holds, what the
// machine offers.
#include <cstdio>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "api/impl.h"
#include "core/error.h"
#include "core/openmp_wait.h"
#include "core/threads.h"
#include "dist/comm.h"
#include "io/files.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "io/torch_pickle.h"
#include "kernels/gemm.h"
#include "models/registry.h"
#include "peft/method.h"

namespace peft::api {
namespace {

const char* const kTokenizerFiles[] = {"tokenizer.json", "tokenizer.model",
                                       "vocab.txt",      "vocab.json",
                                       "merges.txt",     "tokenizer_config.json"};

// Parameter count and dtype census of the safetensors in a folder (headers only).
struct WeightsSummary {
  int64_t params = 0;
  uint64_t bytes = 0;
  std::map<std::string, int64_t> dtypes;  // stored dtype -> number of parameters
  size_t tensors = 0;
};

WeightsSummary summarize(const SafetensorsSet& set, const HFConfig* config, const ArchSpec* arch) {
  WeightsSummary s;
  for (const std::string& name : set.names()) {
    if (arch && config && arch->canonical_name(name, *config).empty()) continue;  // buffers
    const SafetensorInfo& t = set.info(name);
    const int64_t n = shape_numel(t.shape);
    s.params += n;
    s.bytes += t.end - t.begin;
    s.dtypes[t.stored_dtype] += n;
    ++s.tensors;
  }
  return s;
}

nlohmann::ordered_json model_info(const std::string& dir) {
  const HFConfig c = load_hf_config(dir);
  const ArchSpec& arch = arch_for(c.model_type, join_path(dir, "config.json"));
  const SafetensorsSet set(dir);
  const WeightsSummary w = summarize(set, &c, &arch);
  nlohmann::ordered_json j;
  j["kind"] = "model";
  j["model_type"] = c.model_type;
  j["architecture"] = c.architectures.empty() ? arch.architecture : c.architectures[0];
  j["params"] = w.params;
  j["dtypes"] = w.dtypes;
  j["bytes"] = w.bytes;
  j["tensors"] = w.tensors;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_attention_heads"] = c.num_attention_heads;
  if (c.model_type != "bert") j["num_key_value_heads"] = c.num_key_value_heads;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["weights"] = set.source();
  nlohmann::json tok = nlohmann::json::array();
  for (const char* f : kTokenizerFiles)
    if (file_exists(join_path(dir, f))) tok.push_back(f);
  j["tokenizer_files"] = tok;
  return j;
}

nlohmann::ordered_json adapter_info(const std::string& dir) {
  const std::string path = join_path(dir, "adapter_config.json");
  const nlohmann::json cfg = read_json_file(path);
  if (!cfg.is_object()) fail("{}: expected a JSON object", path);
  nlohmann::ordered_json j;
  j["kind"] = "adapter";
  std::string weights;
  std::string base;
  if (cfg.contains("peft_type")) {  // Hugging Face PEFT: the registry tells the method
    j["method"] = method_of_adapter(dir).name;
    j["peft_type"] = cfg["peft_type"];
    weights = "adapter_model";
    if (cfg.contains("base_model_name_or_path") && cfg["base_model_name_or_path"].is_string())
      base = cfg["base_model_name_or_path"].get<std::string>();
  } else if (cfg.contains("config") && cfg["config"].is_object()) {  // AdapterHub
    j["method"] = method_of_adapter(dir).name;
    weights = "adapter";
  } else {
    fail("{}: neither \"peft_type\" (PEFT) nor \"config\" (AdapterHub) found", path);
  }
  j["config"] = cfg;
  const std::string file = join_path(dir, weights + ".safetensors");
  int64_t trainable = 0;
  size_t count = 0;
  if (weights == "adapter" && !file_exists(file) &&
      file_exists(join_path(dir, "pytorch_adapter.bin"))) {  // AdapterHub's default torch.save
    const auto tensors = read_torch_checkpoint(join_path(dir, "pytorch_adapter.bin"));
    for (const auto& [name, t] : tensors) trainable += t.numel();
    count = tensors.size();
  } else {
    if (!file_exists(file)) fail("{}: no {}.safetensors beside adapter_config.json", dir, weights);
    const SafetensorsFile f(file);
    for (const SafetensorInfo& t : f.tensors()) trainable += shape_numel(t.shape);
    count = f.tensors().size();
  }
  j["trainable_params"] = trainable;
  j["tensors"] = count;
  if (!base.empty()) {
    j["base_model"] = base;
    if (file_exists(join_path(base, "config.json"))) {
      try {
        const nlohmann::ordered_json b = model_info(base);
        j["base_params"] = b["params"];
        j["share"] = double(trainable) / b["params"].get<double>();
      } catch (const peft::Error&) {
        // The base is optional context; a broken base folder does not make the adapter bad.
      }
    }
  }
  return j;
}

nlohmann::ordered_json folder_info(const std::string& dir) {
  if (!directory_exists(dir)) fail("{}: no such folder", dir);
  if (file_exists(join_path(dir, "adapter_config.json"))) return adapter_info(dir);
  if (file_exists(join_path(dir, kStackFile))) {  // stacked adapters: one sub-folder each
    nlohmann::ordered_json j;
    j["kind"] = "adapter stack";
    j["methods"] = nlohmann::json::array();
    j["adapters"] = nlohmann::json::array();
    int64_t trainable = 0;
    for (const std::string& sub : adapter_folders(dir)) {
      nlohmann::ordered_json a = adapter_info(sub);
      a["folder"] = folder_name(sub);
      j["methods"].push_back(a["method"]);
      trainable += a["trainable_params"].get<int64_t>();
      j["adapters"].push_back(a);
    }
    j["trainable_params"] = trainable;
    return j;
  }
  if (file_exists(join_path(dir, "config.json"))) return model_info(dir);
  fail(
      "{}: neither config.json (a model), adapter_config.json (an adapter) nor {} (stacked "
      "adapters) found",
      dir, kStackFile);
}

}  // namespace

std::string folder_name(const std::string& dir) {
  std::filesystem::path p(dir);
  while (!p.empty() && !p.has_filename() && p.has_parent_path() && p != p.root_path())
    p = p.parent_path();  // "a/b/" -> "a/b"
  std::string name = p.filename().string();
  if (name.empty() || name == ".")
    name = std::filesystem::absolute(p).lexically_normal().parent_path().filename().string();
  return name.empty() ? dir : name;
}

void install_interrupt_handler() {
  peft::install_interrupt_handler();
}

int process_rank() {
  return dist::rank();
}

int process_count() {
  return dist::size();
}

std::string mpi_library() {
  return dist::mpi_library();
}

std::string folder_info_json(const std::string& dir) {
  return guarded([&] { return folder_info(dir).dump(); });
}

std::string system_info_json() {
  return guarded([&] {
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
    return out.dump();
  });
}

}  // namespace peft::api
