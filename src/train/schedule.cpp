#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace peft {

Schedule schedule_from_name(const std::string& name) {
  if (name == "constant") return Schedule::Constant;
  if (name == "linear") return Schedule::Linear;
  if (name == "cosine") return Schedule::Cosine;
  fail("unknown scheduler \"{}\" (expected constant, linear or cosine)", name);
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::Constant:
      return "constant";
    case Schedule::Linear:
      return "linear";
    case Schedule::Cosine:
      return "cosine";
  }
  return "?";
}

float learning_rate_at(Schedule schedule, float base_lr, int64_t step, int64_t warmup_steps,
                       int64_t total_steps) {
  if (step < warmup_steps) return base_lr * float(step) / float(std::max<int64_t>(1, warmup_steps));
  if (schedule == Schedule::Constant) return base_lr;
  const double span = double(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = double(step - warmup_steps) / span;
  if (schedule == Schedule::Linear) return float(base_lr * std::max(0.0, 1.0 - progress));
  return float(base_lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress))));
}

}  // namespace peft
