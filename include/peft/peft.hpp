// peft.cpp's public C++ API: load a Hugging Face model folder, create / load / save / merge
// adapters of any method, train them with callbacks, evaluate, generate with streaming, and export
// to llama.cpp's GGUF. The `peft` program is built on it.
//
// Only the standard library appears here: the engine (tensors, tape, parameter store) and the
// third-party libraries stay behind Model's pimpl. Every failure is a peft::api::Error whose
// message names the file, key or setting at fault (the `peft` program prints it as
// "peft: error: MESSAGE"). A Model is not safe to use from two threads at once; separate Models
// are independent.
//
//   #include <peft/peft.hpp>
//   auto model = peft::api::Model::load("models/qwen-tiny");
//   model.create_adapter("lora", {{"r", "8"}, {"target-modules", "q_proj,v_proj"}});
//   peft::api::TrainOptions t;
//   t.data = "train.jsonl";
//   t.max_steps = 20;
//   model.train(t, [](const peft::api::StepInfo& s) { return s.loss > 0.5; });  // false: stop
//   model.save_adapter("out/adapter");
//   model.generate("Hello", {}, [](const std::string& piece) { std::cout << piece; return true; });
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

// What libpeft.so exports (it is built with hidden visibility, and the engine inside stays hidden).
#ifndef PEFT_API
#define PEFT_API __attribute__((visibility("default")))
#endif

namespace peft::api {

// The library's version, "MAJOR.MINOR.PATCH".
PEFT_API const char* version();

// The one exception type of the API.
class PEFT_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The method names create_adapter() accepts ("lora", "prompt", ...), in the registry's order.
PEFT_API std::vector<std::string> method_names();

struct LoadOptions {
  // Frozen base matrices: "" as stored (mapped, zero-copy), or converted at load to "f32",
  // "bf16", "q8_0" or "q4_0".
  std::string base_dtype;
};

struct ModelInfo {
  std::string model_type;  // "qwen2", "llama", "baichuan", "bert"
  int64_t parameters = 0;
  int64_t vocab_size = 0, hidden_size = 0, num_layers = 0, num_heads = 0, num_kv_heads = 0;
  bool causal_lm = true;  // false: a masked LM (BERT)
  bool has_tokenizer = false;
};

struct AdapterInfo {
  std::string method;       // registry name, e.g. "lora"
  std::string peft_type;    // adapter_config.json's, e.g. "LORA"
  std::string config_json;  // the adapter_config.json it writes
  bool mergeable = false;   // can be folded into the weights (LoRA)
};

struct EvalResult {
  double loss = 0;  // token-weighted mean negative log-likelihood (nats)
  double ppl = 0;
  int64_t tokens = 0;
  double token_accuracy = 0;
  int64_t records = 0;
};

struct ClassifyOptions {
  std::string pattern;     // "{text} It was {mask}." ({text}, {text_b}, one {mask})
  std::string verbalizer;  // JSON object label -> word(s), inline or a file path
  int64_t max_len = 512;
};

struct ClassifyResult {
  std::vector<std::string> labels;                 // the verbalizer's, in order
  std::vector<std::vector<double>> probabilities;  // per record, softmax over the labels
  std::vector<std::string> predictions;            // per record, the most probable label
  // Over the records that carry a label (none: absent).
  std::optional<double> accuracy, macro_f1;
};

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  bool greedy = true;  // false: sample with the settings below
  float temperature = 1.0f;
  int64_t top_k = 0;   // 0: off
  float top_p = 1.0f;  // 1: off
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
  bool chat = false;  // render the prompt as one user turn with the model's chat template
};

struct GenerateResult {
  std::string text;          // the new text
  std::vector<int32_t> ids;  // the new tokens
  bool stopped = false;      // ended at an end token (not at max_new_tokens or by the callback)
  double tokens_per_s = 0;
};

// Receives each new piece of text as soon as it is complete UTF-8 (the pieces add up to
// GenerateResult::text); return false to stop.
using TextCallback = std::function<bool(const std::string& piece)>;

struct TrainOptions {
  // The objective: "" (causal-lm for decoders, mlm for BERT), "causal-lm", "mlm" or "pet".
  std::string task;
  std::string pattern;     // pet: "{text} It was {mask}."
  std::string verbalizer;  // pet: JSON object label -> word, inline or a file path
  std::string data;        // training records (JSONL or a .json array; CLI.md's record types)
  std::string eval_data;   // optional evaluation records
  std::string out_dir;     // optional: metrics.jsonl, loss.svg, checkpoints (and the adapter)
  int64_t epochs = 1, max_steps = 0;  // max_steps > 0 overrides epochs
  int64_t batch_size = 4, grad_accum = 1, max_len = 512, warmup_steps = 0;
  float lr = 2e-4f, weight_decay = 0.0f, clip_grad = 1.0f;  // clip_grad 0: off
  std::string scheduler = "linear";                         // constant | linear | cosine
  uint64_t seed = 42;
  bool shuffle = true, packing = false;
  int64_t eval_every = 0, save_every = 0, log_every = 1;
  std::string resume;  // a checkpoint folder to continue from
};

// One optimizer step, as metrics.jsonl logs it.
struct StepInfo {
  int64_t step = 0, total_steps = 0;
  double epoch = 0, loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0;
  std::optional<double> eval_loss;  // when this step evaluated
};

// Called after every optimizer step; return false to stop training after it.
using StepCallback = std::function<bool(const StepInfo& step)>;

struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0;
  std::optional<double> eval_loss;
  int64_t trainable_params = 0;
  double tokens_per_s = 0, seconds = 0;
  bool cancelled = false;  // the callback stopped it
};

struct MergeResult {
  int64_t merged_modules = 0;  // weights that had a delta folded in
  std::string dtype;           // "f32" or "bf16"
};

struct ExportOptions {
  // Model: "f32", "bf16" or "q8_0" (default: bf16 when the base is stored bf16, else f32);
  // adapter: "f32" (default) or "bf16".
  std::string dtype;
  // With adapters attached: true writes the model with them folded in; false the adapters alone
  // (llama.cpp's LoRA adapter file). Without adapters the model is written either way.
  bool merge = false;
};

struct ExportResult {
  std::string kind;  // "model" or "adapter"
  std::string dtype;
  int64_t tensors = 0;  // LoRA pairs (adapter) or weights with a delta folded in (merged model)
};

class PEFT_API Model {
 public:
  // Loads DIR (config.json, safetensors, tokenizer files when present).
  static Model load(const std::string& dir, const LoadOptions& options = {});
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  ModelInfo info() const;
  const std::string& dir() const;

  // Token ids as the Hugging Face tokenizer of the folder gives them, and back.
  std::vector<int32_t> tokenize(const std::string& text, bool add_special_tokens = true) const;
  std::string detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // ---- adapters: the model holds one stack of adapters at a time ----
  // Attaches adapter folders (PEFT layout, any method), stacked in order, replacing any attached.
  void load_adapters(const std::vector<std::string>& dirs);
  // A fresh adapter of `method` (method_names()), replacing any attached. `settings` are the
  // method's flags as `peft train` takes them, without "--" ({"r", "16"}, {"lora-alpha", "32"},
  // {"target-modules", "q_proj,v_proj"}, {"num-virtual-tokens", "20"}), validated like them.
  void create_adapter(const std::string& method,
                      const std::map<std::string, std::string>& settings = {}, uint64_t seed = 42);
  // Writes the attached adapter (the first, when several are stacked) as a PEFT folder.
  void save_adapter(const std::string& dir) const;
  void clear_adapters();
  std::vector<AdapterInfo> adapters() const;

  // ---- work ----
  // Trains the attached adapter (create_adapter or load_adapters first) in place.
  TrainResult train(const TrainOptions& options, const StepCallback& on_step = nullptr);
  // Loss and perplexity over a data file (records as `peft eval` reads them).
  EvalResult evaluate(const std::string& data_file, int64_t batch_size = 8);
  // Next-token logits of a token sequence, with the adapters: [ids.size() × vocab_size], row t
  // scoring the token after ids[t].
  std::vector<float> logits(const std::vector<int32_t>& ids);
  // PET: each record's label probabilities from the masked / next-token logits of the
  // verbalizer's words in the pattern (as `peft classify` with one pattern).
  ClassifyResult classify(const std::string& data_file, const ClassifyOptions& options);
  GenerateResult generate(const std::string& prompt, const GenerateOptions& options = {},
                          const TextCallback& on_text = nullptr);
  // The adapters folded into the weights, written as a Hugging Face model folder (dtype "f32" or
  // "bf16"; "" = the base's).
  MergeResult merge(const std::string& out_dir, const std::string& dtype = "") const;
  // A GGUF file for llama.cpp (see ExportOptions).
  ExportResult export_gguf(const std::string& path, const ExportOptions& options = {}) const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace peft::api
