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

// A training run that stopped cleanly on SIGINT / SIGTERM (see install_interrupt_handler()): a
// checkpoint was written where an output folder was given, and what() says where.
class PEFT_API Interrupted : public Error {
 public:
  Interrupted(const std::string& what, int signal) : Error(what), signal_(signal) {}
  int signal() const { return signal_; }  // the signal that asked to stop

 private:
  int signal_;
};

// The first SIGINT / SIGTERM after this call only asks a training run to stop after its current
// step (writing a checkpoint, then throwing Interrupted); a second one ends the process.
PEFT_API void install_interrupt_handler();

// Under mpirun (a build with MPI): this process's rank and the number of ranks (0 and 1 without
// MPI), and the MPI library built in ("" when none). Training splits every batch over the ranks;
// rank 0 alone writes files.
PEFT_API int process_rank();
PEFT_API int process_count();
PEFT_API std::string mpi_library();

// What a folder holds, read from headers and configs only (no weights loaded), as one JSON
// object: a model folder (architecture, parameter count, dtypes, config shapes, tokenizer files),
// an adapter folder (method, config, trainable parameters, share of the base when found) or a
// stack of adapters.
PEFT_API std::string folder_info_json(const std::string& dir);
// The machine as the library sees it, as one JSON object: threads, cores, GEMM backends and CPU
// features, the MPI library.
PEFT_API std::string system_info_json();

// The method names create_adapter() accepts ("lora", "prompt", ...), in the registry's order;
// the first is the default method of train(model_dir, ...).
PEFT_API std::vector<std::string> method_names();

// One setting of a method, as create_adapter() and TrainOptions::method_settings take it (and
// `peft train` declares it as a flag): enough for a front end to validate values before a method
// sees them.
struct MethodSetting {
  enum class Type { Int, Float, Bool, String, IntList, Json, Custom };
  std::string name;  // without "--", e.g. "r", "target-modules"
  Type type = Type::String;
  std::string help;   // one line
  std::string group;  // the heading of the method(s) it belongs to, e.g. "LoRA"
  // A numeric range (absent bound: unbounded; *_open: the bound itself excluded), or the only
  // texts allowed (compared ignoring case).
  std::optional<double> min, max;
  bool min_open = false, max_open = false;
  std::vector<std::string> choices;
};

// Every method's settings, each name once (methods that share a setting share its row), in the
// registry's order.
PEFT_API std::vector<MethodSetting> method_settings();

// The objectives TrainOptions::task accepts ("causal-lm", "mlm", "pet", "seq-cls").
PEFT_API std::vector<std::string> objective_names();

// ---- random model folders (tests, demos, benchmarks; `peft init`) ----
struct InitModelOptions {
  std::string arch;           // "qwen2", "llama", "baichuan" or "bert"
  std::string preset;         // one of model_presets(arch), e.g. "tiny"
  std::string dtype = "f32";  // stored dtype: "f32" or "bf16"
  uint64_t seed = 0;
  // Optional: a folder whose tokenizer files are copied and whose vocabulary size (and special
  // token ids) the model takes.
  std::string vocab_from;
};

struct InitModelResult {
  std::string model_type;
  int64_t parameters = 0, vocab_size = 0;
  std::vector<std::string> tokenizer_files;  // those copied from vocab_from
};

// The presets init_model() knows for an architecture ("tiny", "small", "qwen2-0.5b", ...).
PEFT_API std::vector<std::string> model_presets(const std::string& arch);
// Writes a randomly initialised model folder (config.json, model.safetensors; Hugging Face
// layout) into OUT_DIR, created when absent.
PEFT_API InitModelResult init_model(const std::string& out_dir, const InitModelOptions& options);

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
  // A *ForSequenceClassification folder: the class names of its head (else empty).
  std::vector<std::string> sequence_classes;
};

struct AdapterInfo {
  std::string method;       // registry name, e.g. "lora"
  std::string peft_type;    // adapter_config.json's, e.g. "LORA"
  std::string config_json;  // the adapter_config.json it writes
  bool mergeable = false;   // can be folded into the weights (LoRA)
};

struct EvalOptions {
  int64_t batch_size = 8;  // records per forward pass (language-model records)
  // Classification records scored as PET does: the pattern ("{text} It was {mask}.") and the
  // verbalizer (JSON object label -> word, inline or a file path). Empty: language-model records.
  std::string pattern, verbalizer;
};

struct EvalResult {
  double loss = 0;  // token-weighted mean negative log-likelihood (nats); PET: mean CE per record
  double ppl = 0;
  int64_t tokens = 0;  // scored tokens; PET: scored (labelled) records
  double token_accuracy = 0;
  int64_t records = 0;
  std::optional<double> accuracy, macro_f1;  // PET only
};

struct ClassifyOptions {
  // PET patterns ("{text} It was {mask}.": {text}, {text_b}, one {mask}); several make an
  // ensemble whose class scores are averaged, weighted by pattern_weights (default 1 each).
  // None: the head of a sequence-classification adapter (the attached one, trained with task
  // "seq-cls") or of a *ForSequenceClassification model folder scores the records.
  std::vector<std::string> patterns;
  std::string verbalizer;  // JSON object label -> word(s), inline or a file path
  std::vector<double> pattern_weights;
  // Empty: the attached adapters serve every pattern; else one adapter folder per pattern, each
  // used for its pattern alone.
  std::vector<std::string> pattern_adapters;
  int64_t max_len = 512;  // {text} / {text_b} are truncated to fit
  // When set, every record with the (ensemble's) distribution at distill_temperature as
  // "soft_labels" is written there (JSONL), to distil into one model with train().
  std::string distill_out;
  double distill_temperature = 2;
};

struct ClassifyResult {
  std::vector<std::string> labels;                 // the verbalizer's / head's, in order
  std::vector<std::vector<double>> scores;         // per record, the class scores
  std::vector<std::vector<double>> probabilities;  // per record, softmax over the labels
  std::vector<std::string> predictions;            // per record, the most probable label
  // Over the records that carry a label (none: absent).
  int64_t labelled = 0;
  std::optional<double> accuracy, macro_f1, loss;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted], when labelled
  std::vector<double> pattern_accuracies;       // an ensemble's members, when labelled
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
  double tokens_per_s = 0;   // decoding: new tokens after the first / their time
  double prefill_tokens_per_s = 0;  // the prompt's forward pass (up to the first new token)
  int64_t prompt_tokens = 0;
};

// One turn of a conversation: role "system", "user" or "assistant".
struct ChatMessage {
  std::string role, content;
};

// Receives each new piece of text as soon as it is complete UTF-8 (the pieces add up to
// GenerateResult::text); return false to stop.
using TextCallback = std::function<bool(const std::string& piece)>;

// The defaults are `peft train`'s.
struct TrainOptions {
  // What trains (train(model_dir, ...) only; Model::train trains the attached adapters):
  // "" (the registry's first method, or the methods an `adapter` / `resume` folder holds), a
  // method_names() entry, several comma-separated (stacked, each saved in its own sub-folder), or
  // "full" (every weight; the model is loaded in f32).
  std::string method;
  // The method's flags as `peft train` takes them, without "--" ({"r", "16"}); with an `adapter`
  // or `resume` folder those given must agree with its config.
  std::map<std::string, std::string> method_settings;
  std::string adapter;     // continue training an adapter folder (any method, or a stacked run's)
  std::string base_dtype;  // frozen base matrices, as LoadOptions::base_dtype

  // The objective: "" (causal-lm for decoders, mlm for BERT), or objective_names()'s:
  // "causal-lm", "mlm", "pet", "seq-cls".
  std::string task;
  std::vector<std::string> patterns;  // pet: "{text} It was {mask}." (training uses the first)
  std::string verbalizer;             // pet: JSON object label -> word, inline or a file path
  std::vector<std::string> labels;    // seq-cls: class names in order (default: the data's, sorted)
  double pet_mlm_weight = 0;          // pet: PET's α, loss = (1 - α)·CE + α·MLM
  std::string unlabeled_data;         // pet: records of the auxiliary MLM loss
  double distill_temperature = 2;     // records with soft_labels: KL at this temperature
  double mlm_probability = 0.15;      // mlm: share of tokens selected for masking
  bool whole_word_mask = false;       // mlm: select whole words

  std::string data;       // training records (JSONL or a .json array; CLI.md's record types)
  std::string eval_data;  // optional evaluation records
  // Optional: the adapter (or model folder), metrics.jsonl, loss.svg, checkpoints. train(dir,
  // ...) wants it new or empty (unless overwrite, or resuming from a checkpoint inside it) and
  // holds DIR/.peft.lock while it writes.
  std::string out_dir;
  bool overwrite = false;             // replace the outputs of a previous run in out_dir
  int64_t epochs = 1, max_steps = 0;  // max_steps > 0 overrides epochs
  int64_t batch_size = 4, grad_accum = 1, max_len = 512, warmup_steps = 0;
  float lr = 2e-4f, weight_decay = 0.0f, clip_grad = 1.0f;  // clip_grad 0: off
  std::string scheduler = "linear";                         // constant | linear | cosine
  uint64_t seed = 42;
  bool shuffle = true, packing = false;
  int64_t eval_every = 0, save_every = 0, log_every = 1;
  std::string resume;                  // a checkpoint folder to continue from
  bool resume_accept_changes = false;  // resume although a setting or the data differs
  bool progress = false;               // a progress bar on stderr
  // Activation checkpointing (decoders): keep each layer's input only and recompute the layer in
  // backward: much less memory for about one more forward pass of time.
  bool gradient_checkpointing = false;
  // Under mpirun: AdamW state sharded over the ranks (ZeRO-1); gradients summed in "f32" or
  // "bf16"; summed in buckets during backward ("on"), in one all-reduce after it ("off"), or on
  // from 16M trainable parameters ("auto"); the overlapped buckets' size in MiB.
  bool shard_optimizer = false;
  std::string allreduce_dtype = "f32";
  std::string allreduce_overlap = "auto";
  double allreduce_bucket_mb = 4.0;
};

// One optimizer step, as metrics.jsonl logs it.
struct StepInfo {
  int64_t step = 0, total_steps = 0;
  double epoch = 0, loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0;
  std::optional<double> eval_loss;  // when this step evaluated
};

// Called after every optimizer step; return false to stop training after it.
using StepCallback = std::function<bool(const StepInfo& step)>;

// What a run is about to do, reported once before its first step.
struct TrainStart {
  std::string method;  // e.g. "lora", "lora+prompt" (stacked) or "full"
  std::string task;
  int64_t records = 0;            // training records read
  int64_t rows = 0;               // rows they make (fewer when packed)
  int64_t truncated_records = 0;  // records longer than max_len, cut
  int64_t total_steps = 0;
  int64_t trainable_params = 0, model_params = 0;
  int ranks = 1;
};

// The training records as read and batched, reported before the parameters are set up (so that
// a front end can report them ahead of any error in loading an adapter or a checkpoint).
struct TrainData {
  int64_t records = 0;            // training records read
  int64_t rows = 0;               // rows they make (fewer when packed)
  int64_t truncated_records = 0;  // records longer than max_len, cut
};

struct TrainCallbacks {
  std::function<void(const TrainData&)> on_data;
  std::function<void(const TrainStart&)> on_start;
  StepCallback on_step;
};

struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0;
  std::optional<double> eval_loss;
  int64_t trainable_params = 0;
  double tokens_per_s = 0, seconds = 0;
  bool cancelled = false;         // the callback stopped it
  std::string method, task;       // as TrainStart says
  std::string written;            // what the run wrote into out_dir besides logs, e.g.
                                  // "adapter_config.json + adapter_model.safetensors"
  double memory_estimate_mb = 0;  // train(dir, ...)'s memory guard's estimate
  int64_t truncated_records = 0;
  int ranks = 1;
  double allreduce_seconds = 0, wait_seconds = 0;  // data-parallel: summing and waiting
  bool allreduce_overlapped = false;               // the sums ran during backward
  // With eval_data, the objective's own metrics of the final model (rank 0): accuracy over masked
  // tokens or records; macro-F1 for classification.
  std::optional<double> eval_objective_loss, eval_accuracy, eval_macro_f1;
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

// A folder's Hugging Face tokenizer alone (no weights read): what Model::tokenize / detokenize
// use, for tools that need only the tokens.
class PEFT_API Tokenizer {
 public:
  // A model or tokenizer folder (tokenizer.json, vocab.json + merges.txt, tokenizer.model or
  // vocab.txt).
  static Tokenizer load(const std::string& dir);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  int64_t vocab_size() const;
  // The token's own text ("" for an id the vocabulary does not hold).
  std::string id_to_token(int32_t id) const;

  struct Impl;  // the library's own (opaque here)

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The whole content of a file (errors name it), as the commands read --file inputs.
PEFT_API std::string read_file(const std::string& path);

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
  // Trains the attached adapters (create_adapter or load_adapters first) in place; the
  // options' method / adapter / base_dtype are train(model_dir, ...)'s and must be left empty.
  TrainResult train(const TrainOptions& options, const StepCallback& on_step = nullptr);
  TrainResult train(const TrainOptions& options, const TrainCallbacks& callbacks);
  // Loss and perplexity over a data file (records as `peft eval` reads them).
  EvalResult evaluate(const std::string& data_file, int64_t batch_size = 8);
  EvalResult evaluate(const std::string& data_file, const EvalOptions& options);
  // Next-token logits of a token sequence, with the adapters: [ids.size() × vocab_size], row t
  // scoring the token after ids[t].
  std::vector<float> logits(const std::vector<int32_t>& ids);
  // PET: each record's label probabilities from the masked / next-token logits of the
  // verbalizer's words in the pattern (as `peft classify` with one pattern).
  ClassifyResult classify(const std::string& data_file, const ClassifyOptions& options);
  GenerateResult generate(const std::string& prompt, const GenerateOptions& options = {},
                          const TextCallback& on_text = nullptr);
  // The assistant's next turn after `messages`, rendered with the model's chat template
  // (options.chat is implied).
  GenerateResult chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options = {},
                      const TextCallback& on_text = nullptr);
  // The adapters folded into the weights, written as a Hugging Face model folder (dtype "f32" or
  // "bf16"; "" = the base's).
  MergeResult merge(const std::string& out_dir, const std::string& dtype = "") const;
  // A GGUF file for llama.cpp (see ExportOptions).
  ExportResult export_gguf(const std::string& path, const ExportOptions& options = {}) const;

  struct Impl;  // the library's own (opaque here)

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend TrainResult train(const std::string&, const TrainOptions&, const TrainCallbacks&);
};

// `peft train` in one call: checks out_dir and the memory the run needs (models/memory.h) before
// loading anything, loads MODEL_DIR (in f32 for method "full"), creates, continues (adapter) or
// resumes the method(s) the options name, trains them with the objective, writes the adapter (or
// the model folder) with metrics.jsonl, loss.svg and checkpoints into out_dir, and with eval_data
// reports the objective's metrics. Stopped by SIGINT after install_interrupt_handler(): throws
// Interrupted once the checkpoint is written.
PEFT_API TrainResult train(const std::string& model_dir, const TrainOptions& options,
                           const TrainCallbacks& callbacks = {});

}  // namespace peft::api
