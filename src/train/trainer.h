// The training loop, independent of model and method: it sees batches, a loss function, and the
// trainable parameters (STYLE.md: the trainer sees only a loss and the trainable parameters).
//   step loss = Σ_microbatches Σ_tokens nll / Σ_microbatches target tokens  (token-weighted mean
//   over the whole accumulated batch; metrics.jsonl's loss at step k is the loss whose gradient
//   step k applies)
// AdamW with warmup + schedule, clipping by global norm, periodic evaluation, metrics.jsonl,
// loss.svg, atomic checkpoints (checkpoint-STEP/) and exact resume.
// Under mpirun each step's batch is split across the ranks and the gradients summed with one
// all-reduce (train/data_parallel.h); rank 0 alone writes metrics, the plot and checkpoints.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "autograd/params.h"
#include "train/adamw.h"
#include "train/batch.h"
#include "train/data_parallel.h"
#include "train/schedule.h"

namespace peft {

// What the trainer reports after each optimizer step (the fields of a metrics.jsonl line).
struct StepReport {
  int64_t step = 0, total_steps = 0;
  double epoch = 0, loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0;
  std::optional<double> eval_loss;
};

// How the ranks sum gradients: one all-reduce after the backward passes (Off), or buckets
// overlapped with the last one (On; train/data_parallel.h); Auto overlaps large trainable states.
enum class AllreduceOverlap { Off, On, Auto };

struct TrainerOptions {
  int64_t epochs = 1;
  int64_t max_steps = 0;  // > 0 overrides epochs
  int64_t grad_accum = 1;
  float lr = 1e-4f;
  int64_t warmup_steps = 0;
  Schedule schedule = Schedule::Linear;
  AdamWConfig adamw;
  float clip_grad = 1.0f;  // 0 disables
  uint64_t seed = 0;
  int64_t eval_every = 0;  // 0: evaluate at the end only (when eval data is given)
  int64_t save_every = 0;
  int64_t log_every = 1;
  std::string out_dir;
  bool progress = false;                     // progress bar on stderr
  std::string plot_title = "training loss";  // loss.svg's title, e.g. "lora fine-tune of qwen-tiny"
  // With several ranks: each keeps the AdamW moments of its slice of the parameters only (ZeRO
  // stage 1).
  bool shard_optimizer = false;
  // With several ranks: gradients summed in bf16 (half the traffic; for full fine-tuning).
  bool allreduce_bf16 = false;
  AllreduceOverlap allreduce_overlap = AllreduceOverlap::Auto;
  int64_t allreduce_bucket_floats = kOverlapBucketFloats;  // of the overlapped sum
  // What a resumed run must share with its checkpoint (flag -> value, e.g. "--lr" -> "0.005",
  // "--data" -> a content hash): saved in trainer_state.json; resume_from refuses a difference
  // unless accept_changes.
  std::map<std::string, std::string> run_settings;
  bool accept_changes = false;
  // Called after every step (after its metrics line and checkpoint); returning false stops
  // training there (TrainResult::stopped). With several ranks every rank must return the same.
  std::function<bool(const StepReport&)> on_step = nullptr;
};

// Sum of token NLLs of a batch divided by `normaliser`. `training`: a training step (the tape
// records; dropout on) rather than an evaluation; the loss function hands it to the model in its
// ForwardContext.
using LossFunction = std::function<Var(const Batch& batch, float normaliser, bool training)>;
// Writes the method's adapter folder (and anything else the method needs to resume) into a dir.
using SaveAdapter = std::function<void(const std::string& dir)>;

struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0;
  std::optional<double> eval_loss;
  double tokens_per_s = 0;
  double seconds = 0;
  int ranks = 1;
  // Several ranks: time waiting at the step's end for the slowest rank (a barrier), then in the
  // gradient and loss all-reduces themselves. With the overlapped sum there is no barrier:
  // allreduce_seconds is the time after backward until every sum is done (the part backward did
  // not hide, waiting for the slowest rank included) and wait_seconds stays 0.
  double wait_seconds = 0, allreduce_seconds = 0;
  bool allreduce_overlapped = false;
  bool stopped = false;  // on_step returned false before the last step
};

class Trainer {
 public:
  Trainer(ParamStore& params, const BatchBuilder& train_data, const BatchBuilder* eval_data,
          LossFunction loss, SaveAdapter save_adapter, TrainerOptions options);
  // Continues from a checkpoint folder written by this trainer (parameters, AdamW moments, step,
  // data position and RNG state). metrics.jsonl in out_dir then keeps the lines up to the
  // checkpoint's step, so that every step appears once.
  void resume_from(const std::string& checkpoint_dir);
  // Extra state (e.g. a dropout Rng) saved with checkpoints: position getter and setter.
  void track_rng(Rng* rng) { tracked_rngs_.push_back(rng); }
  // Runs to total_steps(). With an out_dir, the final adapter is written (save_adapter) before
  // anything optional (loss.svg). A SIGINT / SIGTERM (core/interrupt.h) ends the current step,
  // writes checkpoint-STEP and throws Interrupted.
  TrainResult train();
  // Token-weighted mean NLL over a whole data set, without recording (the batches split over the
  // ranks; every rank must call it).
  double evaluate(const BatchBuilder& data) const;
  int64_t total_steps() const { return total_steps_; }

 private:
  void save_checkpoint(int64_t step);
  // The AdamW moment `which` (m or v) of every parameter, on rank 0 (gathered from the shards).
  Tensor full_moment(Tensor& shard);
  void append_metrics(const std::string& line) const;
  void write_plot() const;
  void trim_metrics() const;

  ParamStore& params_;
  const BatchBuilder& train_;
  const BatchBuilder* eval_;
  LossFunction loss_;
  SaveAdapter save_adapter_;
  TrainerOptions options_;
  AdamW optimizer_;
  std::vector<Rng*> tracked_rngs_;
  int64_t total_steps_ = 0;
  int64_t steps_per_epoch_ = 0;
  // Position: `step_` optimizer steps done; the next micro-batch is batch `cursor_` of epoch
  // `epoch_`.
  int64_t step_ = 0, epoch_ = 0, cursor_ = 0;
  bool resumed_ = false;
  std::vector<std::pair<double, double>> train_curve_, eval_curve_;
};

// L2 norm over all gradients, and in-place scaling to `max_norm` when above it (as
// torch.nn.utils.clip_grad_norm_: factor max_norm / (norm + 1e-6)). Returns the norm before.
double clip_grad_norm(Tensor& grads, float max_norm);

}  // namespace peft
