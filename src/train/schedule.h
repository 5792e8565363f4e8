// Learning-rate schedules with linear warmup, as transformers' get_*_schedule_with_warmup:
//   warmup (s < W): lr·s/W
//   constant:       lr
//   linear:         lr·max(0, (S − s) / (S − W))
//   cosine:         lr·max(0, ½(1 + cos(π·(s − W)/(S − W))))
// s is the number of optimizer steps already taken (0 for the first step), S the total.
#pragma once

#include <cstdint>
#include <string>

namespace peft {

enum class Schedule { Constant, Linear, Cosine };

Schedule schedule_from_name(const std::string& name);  // throws Error for unknown names
const char* schedule_name(Schedule s);

float learning_rate_at(Schedule schedule, float base_lr, int64_t step, int64_t warmup_steps,
                       int64_t total_steps);

}  // namespace peft
