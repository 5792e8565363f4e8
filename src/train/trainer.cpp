#include "train/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/finite.h"
#include "core/interrupt.h"
#include "dist/comm.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "train/data_parallel.h"
#include "train/plot.h"

namespace peft {
namespace {

using Clock = std::chrono::steady_clock;

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const long s = long(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{:02}:{:02}", s / 60, s % 60);
}

// ZeRO stage 1: the AdamW moments are split over the ranks.
bool sharded(const TrainerOptions& o) {
  return o.shard_optimizer && dist::size() > 1;
}

// Whether this run sums gradients overlapped with backward (several ranks only).
bool overlapped(const TrainerOptions& o, int64_t trainable) {
  if (dist::size() <= 1) return false;
  switch (o.allreduce_overlap) {
    case AllreduceOverlap::On:
      return true;
    case AllreduceOverlap::Off:
      return false;
    case AllreduceOverlap::Auto:
      return trainable >= kOverlapAutoMinFloats;
  }
  return false;
}

// The slice of the parameter buffer whose AdamW moments this rank keeps.
std::pair<int64_t, int64_t> optimizer_range(const ParamStore& params, const TrainerOptions& o) {
  if (!sharded(o)) return {0, params.size()};
  return share_of(params.size(), dist::rank(), dist::size());
}

}  // namespace

double clip_grad_norm(Tensor& grads, float max_norm) {
  const float* g = grads.data<float>();
  const int64_t n = grads.numel();
  double sq = 0;
#pragma omp parallel for reduction(+ : sq) schedule(static)
  for (int64_t i = 0; i < n; ++i) sq += double(g[i]) * g[i];
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    const float factor = float(max_norm / (norm + 1e-6));
    float* w = grads.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) w[i] *= factor;
  }
  return norm;
}

Trainer::Trainer(ParamStore& params, const BatchBuilder& train_data, const BatchBuilder* eval_data,
                 LossFunction loss, SaveAdapter save_adapter, TrainerOptions options)
    : params_(params),
      train_(train_data),
      eval_(eval_data),
      loss_(std::move(loss)),
      save_adapter_(std::move(save_adapter)),
      options_(std::move(options)),
      optimizer_(params, options_.adamw, optimizer_range(params, options_).first,
                 optimizer_range(params, options_).second) {
  if (train_.num_examples() == 0) fail("the training data holds no usable example");
  PEFT_CHECK(options_.grad_accum >= 1, "grad_accum {}", options_.grad_accum);
  const int64_t batches = int64_t(train_.plan_epoch(options_.seed, 0).batches.size());
  steps_per_epoch_ = (batches + options_.grad_accum - 1) / options_.grad_accum;
  total_steps_ = options_.max_steps > 0 ? options_.max_steps : options_.epochs * steps_per_epoch_;
  if (total_steps_ <= 0)
    fail("nothing to train: {} epochs, max_steps {}", options_.epochs, options_.max_steps);
}

double Trainer::evaluate(const BatchBuilder& data) const {
  NoGradGuard no_grad;
  double sums[2] = {0, 0};  // NLL, target tokens
  const EpochPlan plan = data.plan_epoch(0, 0);
  for (size_t i = size_t(dist::rank()); i < plan.batches.size(); i += size_t(dist::size())) {
    Batch b = data.make_batch(plan.batches[i]);
    if (b.target_tokens == 0) continue;
    sums[0] += double(loss_(b, 1.0f, false)->value.data<float>()[0]);
    sums[1] += double(b.target_tokens);
  }
  dist::allreduce_sum(sums, 2);
  return sums[1] > 0 ? sums[0] / sums[1] : 0.0;
}

void Trainer::append_metrics(const std::string& line) const {
  if (options_.out_dir.empty() || !dist::is_root()) return;
  // Opened and closed per line so an interrupted run keeps every line logged so far; every write
  // and the close are checked (a full disk is an error at this step, not an empty file).
  const std::string path = join_path(options_.out_dir, "metrics.jsonl");
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot open for appending: {}", path, std::strerror(errno));
  const std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      fail("{}: write failed at step {}: {}", path, step_, std::strerror(err));
    }
    done += size_t(n);
  }
  if (::close(fd) != 0) fail("{}: write failed at step {}: {}", path, step_, std::strerror(errno));
}

void Trainer::trim_metrics() const {
  // After a resume from step S, drop the lines of steps after S that the interrupted run logged,
  // so every step appears once (the file is rewritten atomically).
  const std::string path = join_path(options_.out_dir, "metrics.jsonl");
  if (options_.out_dir.empty() || !file_exists(path)) return;
  const std::string text = read_text_file(path);
  std::string kept;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
      continue;  // a line cut by the kill
    if (j["step"].get<int64_t>() <= step_) kept += line + "\n";
  }
  if (kept != text) write_file_atomic(path, kept);
}

void Trainer::write_plot() const {
  if (options_.out_dir.empty() || !dist::is_root()) return;
  // The raw step losses faint, their EMA over them, the evaluations as marked points.
  std::vector<PlotSeries> series(1);
  series[0] = {"train", "#1f77b4", train_curve_};
  series[0].opacity = 0.35;
  series[0].width = 1;
  if (train_curve_.size() > 2) {
    PlotSeries& smooth = series.emplace_back();
    smooth = {"train (smoothed)", "#1f77b4",
              ema_smooth(train_curve_, ema_beta_for(train_curve_.size()))};
    smooth.width = 2;
  }
  if (!eval_curve_.empty()) {
    PlotSeries& eval = series.emplace_back();
    eval = {"eval", "#d62728", eval_curve_};
    eval.markers = true;
  }
  write_file_atomic(join_path(options_.out_dir, "loss.svg"),
                    render_loss_svg(series, options_.plot_title));
}

Tensor Trainer::full_moment(Tensor& shard) {
  if (!sharded(options_)) return shard;
  Tensor full = dist::is_root() ? Tensor::zeros({params_.size()}) : Tensor();
  for (int r = 0; r < dist::size(); ++r) {
    const auto [lo, hi] = share_of(params_.size(), r, dist::size());
    if (r == 0 && dist::is_root())
      std::memcpy(full.data<float>() + lo, shard.data<float>(), size_t(hi - lo) * sizeof(float));
    else if (r > 0)
      dist::send_to_root(dist::is_root() ? full.data<float>() + lo : shard.data<float>(), hi - lo,
                         r);
  }
  return full;
}

void Trainer::save_checkpoint(int64_t step) {
  namespace fs = std::filesystem;
  check_replicas_agree(params_.values(), fmt::format("checkpoint-{}", step).c_str());
  // Every rank takes part in gathering a sharded optimizer state; rank 0 alone writes.
  Tensor m = full_moment(optimizer_.m()), v = full_moment(optimizer_.v());
  if (!dist::is_root()) return;
  const std::string final_dir = join_path(options_.out_dir, fmt::format("checkpoint-{}", step));
  const std::string temp_dir = final_dir + ".partial";
  fs::remove_all(temp_dir);
  fs::create_directories(temp_dir);
  // A failed write (full disk) removes the partial folder; earlier checkpoints stay intact.
  struct RemoveOnFailure {
    std::string dir;
    bool armed = true;
    ~RemoveOnFailure() {
      std::error_code ignored;
      if (armed) fs::remove_all(dir, ignored);
    }
  } cleanup{temp_dir};
  save_adapter_(temp_dir);
  save_safetensors(join_path(temp_dir, "trainer_state.safetensors"),
                   {{"params", params_.values()}, {"adamw_m", m}, {"adamw_v", v}});
  nlohmann::json state{{"step", step_},
                       {"epoch", epoch_},
                       {"cursor", cursor_},
                       {"adamw_steps", optimizer_.steps()},
                       {"seed", options_.seed},
                       {"total_steps", total_steps_},
                       {"param_names", nlohmann::json::array()}};
  for (const auto& e : params_.entries()) state["param_names"].push_back(e.name);
  nlohmann::json rngs = nlohmann::json::array();
  for (const Rng* r : tracked_rngs_) rngs.push_back(r->position());
  state["rng_positions"] = rngs;
  state["train_curve"] = train_curve_;
  state["eval_curve"] = eval_curve_;
  state["run_settings"] = options_.run_settings;
  write_json_atomic(join_path(temp_dir, "trainer_state.json"), state);
  // The folder appears under its final name only when complete.
  fs::remove_all(final_dir);
  fs::rename(temp_dir, final_dir);
  cleanup.armed = false;
  const int dir = ::open(options_.out_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {  // the rename itself durable
    ::fsync(dir);
    ::close(dir);
  }
}

void Trainer::resume_from(const std::string& dir) {
  const std::string state_path = join_path(dir, "trainer_state.json");
  if (!file_exists(state_path)) fail("{}: not a checkpoint folder (no trainer_state.json)", dir);
  const nlohmann::json state = read_json_file(state_path);
  try {
    std::vector<std::string> names = state.at("param_names").get<std::vector<std::string>>();
    std::vector<std::string> ours;
    for (const auto& e : params_.entries()) ours.push_back(e.name);
    if (names != ours)
      fail(
          "{}: the checkpoint's trainable parameters differ from this run's (another method or "
          "configuration?)",
          state_path);
    if (state.at("seed").get<uint64_t>() != options_.seed)
      fail("{}: checkpoint was trained with --seed {}, this run uses {}", state_path,
           state.at("seed").get<uint64_t>(), options_.seed);
    if (state.contains("run_settings")) {
      const auto theirs = state.at("run_settings").get<std::map<std::string, std::string>>();
      std::vector<std::string> changes;
      for (const auto& [key, value] : options_.run_settings) {
        auto it = theirs.find(key);
        if (it != theirs.end() && it->second != value)
          changes.push_back(key == "--data" || key == "--eval-data"
                                ? fmt::format("{} has other contents", key)
                                : fmt::format("{} {} (checkpoint: {})", key, value, it->second));
      }
      if (!changes.empty() && !options_.accept_changes) {
        std::string list;
        for (const std::string& c : changes) list += (list.empty() ? "" : ", ") + c;
        fail(
            "--resume {}: this run differs from the checkpoint's: {}; a resumed run would not "
            "match an uninterrupted one (pass --resume-accept-changes to continue anyway)",
            dir, list);
      }
    }
    SafetensorsFile file(join_path(dir, "trainer_state.safetensors"));
    params_.values().copy_from(file.get("params"));
    // The whole moments are stored; a sharded optimizer takes its slice (any number of ranks).
    for (const auto& [name, moment] : {std::pair<const char*, Tensor*>{"adamw_m", &optimizer_.m()},
                                       {"adamw_v", &optimizer_.v()}}) {
      const Tensor stored = file.get(name);
      if (stored.dtype() != DType::F32 || stored.numel() != params_.size())
        fail("{}: {} holds {} values, expected {} f32", dir, name, stored.numel(), params_.size());
      std::memcpy(moment->data<float>(), stored.data<float>() + optimizer_.begin(),
                  size_t(moment->numel()) * sizeof(float));
    }
    optimizer_.set_steps(state.at("adamw_steps").get<int64_t>());
    step_ = state.at("step").get<int64_t>();
    epoch_ = state.at("epoch").get<int64_t>();
    cursor_ = state.at("cursor").get<int64_t>();
    const auto positions = state.at("rng_positions").get<std::vector<uint64_t>>();
    if (positions.size() != tracked_rngs_.size())
      fail("{}: RNG state does not match this run", state_path);
    for (size_t i = 0; i < positions.size(); ++i) tracked_rngs_[i]->set_position(positions[i]);
    train_curve_ = state.at("train_curve").get<std::vector<std::pair<double, double>>>();
    eval_curve_ = state.at("eval_curve").get<std::vector<std::pair<double, double>>>();
    resumed_ = true;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed trainer state: {}", state_path, e.what());
  }
}

TrainResult Trainer::train() {
  TrainResult result;
  const auto start = Clock::now();
  int64_t tokens_seen = 0;
  EpochPlan plan = train_.plan_epoch(options_.seed, epoch_);
  const int64_t resumed_at = step_;
  double last_loss = 0;
  const int ranks = dist::size();
  result.ranks = ranks;
  std::optional<OverlappedAllreduce> overlap;
  if (overlapped(options_, params_.size()))
    overlap.emplace(params_.grads(), options_.allreduce_bucket_floats, options_.allreduce_bf16);
  result.allreduce_overlapped = overlap.has_value();
  if (resumed_) trim_metrics();
  while (step_ < total_steps_) {
    std::vector<Batch> micro;
    int64_t taken = 0;  // micro-batches of the global plan in this step
    while (taken < options_.grad_accum) {
      if (cursor_ >= int64_t(plan.batches.size())) {
        if (taken > 0) break;  // the epoch's last, shorter accumulation
        ++epoch_;
        cursor_ = 0;
        plan = train_.plan_epoch(options_.seed, epoch_);
        continue;
      }
      // Several ranks: this rank's share of the micro-batch's records (none when it has fewer
      // records than ranks).
      const std::vector<size_t>& all = plan.batches[size_t(cursor_++)];
      std::vector<size_t> mine = ranks > 1 ? records_of_rank(all, dist::rank(), ranks) : all;
      ++taken;
      if (!mine.empty()) micro.push_back(train_.make_batch(mine));
    }
    double counts[2] = {0, 0};  // the step's target and real tokens over every rank
    for (const Batch& b : micro)
      counts[0] += double(b.target_tokens), counts[1] += double(b.real_tokens);
    dist::allreduce_sum(counts, 2);
    const int64_t target_tokens = int64_t(counts[0]), real_tokens = int64_t(counts[1]);
    params_.zero_grad();
    if (overlap) overlap->begin_step();
    double step_loss = 0;
    if (target_tokens > 0) {
      for (const Batch& b : micro) {
        Tape tape;
        // The last backward of the step writes the final gradients: its buckets can be summed
        // while it runs (earlier micro-batches' backward passes only add partial sums).
        if (overlap && &b == &micro.back())
          tape.watch(params_.grads().data<float>(), params_.size(), &*overlap);
        Var loss = loss_(b, float(target_tokens), true);
        step_loss += double(loss->value.data<float>()[0]);
        if (loss->requires_grad) tape.backward(loss);
      }
    }
    if (overlap) {  // the buckets backward did not start, then every sum; the loss
      const auto reduce_start = Clock::now();
      overlap->finish();
      dist::allreduce_sum(&step_loss, 1);
      result.allreduce_seconds +=
          std::chrono::duration<double>(Clock::now() - reduce_start).count();
    } else if (ranks > 1) {  // one all-reduce over the single gradient buffer, one for the loss
      const auto wait_start = Clock::now();
      dist::barrier();  // one message: separates waiting for the slowest rank from the transfer
      const auto reduce_start = Clock::now();
      result.wait_seconds += std::chrono::duration<double>(reduce_start - wait_start).count();
      if (options_.allreduce_bf16)
        dist::allreduce_sum_bf16(params_.grads().data<float>(), params_.size());
      else
        dist::allreduce_sum(params_.grads().data<float>(), params_.size());
      dist::allreduce_sum(&step_loss, 1);
      result.allreduce_seconds +=
          std::chrono::duration<double>(Clock::now() - reduce_start).count();
    }
    const int64_t step_number = step_ + 1;
    if (!std::isfinite(step_loss))
      fail("step {}: the loss is {}; training stopped (checkpoints written so far are intact)",
           step_number, step_loss);
    const double grad_norm = clip_grad_norm(params_.grads(), options_.clip_grad);
    if (!std::isfinite(grad_norm)) {
      std::string where;  // the first parameter whose gradient is NaN / inf
      for (const ParamStore::Entry& e : params_.entries())
        if (const int64_t bad = count_non_finite(e.var->grad); bad > 0) {
          where = fmt::format(" ({} of the gradient of {} are NaN or inf)", bad, e.name);
          break;
        }
      fail(
          "step {}: the gradient norm is {}{}; training stopped (checkpoints written so far are "
          "intact)",
          step_number, grad_norm, where);
    }
    const float lr = learning_rate_at(options_.schedule, options_.lr, step_, options_.warmup_steps,
                                      total_steps_);
    optimizer_.step(lr);
    if (sharded(options_)) {
      // ZeRO-1: every rank updated its slice; each slice goes from its owner to the others.
      for (int r = 0; r < ranks; ++r) {
        const auto [lo, hi] = share_of(params_.size(), r, ranks);
        dist::broadcast(params_.values().data<float>() + lo, hi - lo, r);
      }
    }
    step_ = step_number;
    tokens_seen += real_tokens;
    last_loss = step_loss;
    train_curve_.emplace_back(double(step_), step_loss);

    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double tokens_per_s = elapsed > 0 ? double(tokens_seen) / elapsed : 0;
    nlohmann::json line{
        {"step", step_},          {"epoch", double(step_) / double(steps_per_epoch_)},
        {"loss", step_loss},      {"lr", lr},
        {"grad_norm", grad_norm}, {"tokens_per_s", tokens_per_s}};
    const bool last = step_ == total_steps_;
    if (eval_ && ((options_.eval_every > 0 && step_ % options_.eval_every == 0) || last)) {
      const double e = evaluate(*eval_);
      line["eval_loss"] = e;
      eval_curve_.emplace_back(double(step_), e);
      result.eval_loss = e;
    }
    if (options_.log_every > 0 &&
        (step_ % options_.log_every == 0 || last || line.contains("eval_loss"))) {
      append_metrics(line.dump());
    }
    const bool checkpoint =
        options_.save_every > 0 && step_ % options_.save_every == 0 && !options_.out_dir.empty();
    if (checkpoint) save_checkpoint(step_);
    // The final adapter before anything optional: a failed plot never loses it.
    if (last && !options_.out_dir.empty() && dist::is_root()) save_adapter_(options_.out_dir);
    // The plot is redrawn at evaluations, checkpoints and the end (an atomic write each).
    if (last || line.contains("eval_loss") || checkpoint) write_plot();
    if (options_.progress && dist::is_root()) {
      const int width = 24;
      const int filled = int(double(width) * double(step_) / double(total_steps_));
      const double eta = elapsed / double(step_ - resumed_at) * double(total_steps_ - step_);
      std::fprintf(stderr, "\r[%s%s] %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s ",
                   std::string(size_t(filled), '=').c_str(),
                   std::string(size_t(width - filled), ' ').c_str(), (long long)step_,
                   (long long)total_steps_, step_loss, lr, tokens_per_s,
                   format_duration(eta).c_str());
      if (last) std::fprintf(stderr, "\n");
    }
    // (one process only: ranks of an MPI run could see the signal at different steps)
    if (interrupt_requested() && !last && dist::size() == 1) {
      if (options_.out_dir.empty()) throw Interrupted(fmt::format("interrupted at step {}", step_));
      if (!checkpoint) save_checkpoint(step_);
      const std::string ckpt = join_path(options_.out_dir, fmt::format("checkpoint-{}", step_));
      if (options_.progress) std::fprintf(stderr, "\n");
      throw Interrupted(
          fmt::format("interrupted at step {} of {}: wrote {} (continue with --resume {})", step_,
                      total_steps_, ckpt, ckpt));
    }
    if (options_.on_step) {
      StepReport report{step_,        total_steps_, line["epoch"].get<double>(),
                        step_loss,    lr,           grad_norm,
                        tokens_per_s, std::nullopt};
      if (line.contains("eval_loss")) report.eval_loss = line["eval_loss"].get<double>();
      if (!options_.on_step(report)) {
        result.stopped = !last;
        break;
      }
    }
  }
  check_replicas_agree(params_.values(), "end of training");
  result.steps = step_;
  result.final_loss = last_loss;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.tokens_per_s = result.seconds > 0 ? double(tokens_seen) / result.seconds : 0;
  return result;
}

}  // namespace peft
