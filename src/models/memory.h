// The memory guard: before a command allocates a model, it estimates its peak memory from
// config.json alone (weights, trainable parameters with their gradients and AdamW moments, the
// activations the tape keeps, the KV cache) and refuses, with the estimate and what is available,
// when that cannot fit. A config.json from the internet with num_hidden_layers 10^9 is refused
// here instead of growing until the kernel kills the machine's processes.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "io/hf_config.h"

namespace peft {

// Parameters of the model config.json describes (closed form, as the loader's tensor list).
double config_parameter_count(const HFConfig& c);

struct MemoryPlan {
  double weight_bytes_per_param = 4;  // as stored or as --base-dtype converts them
  double trainable_params = 0;        // f32 value + gradient + AdamW m and v
  int64_t batch = 0, tokens = 0;      // training activations (0: inference only)
  bool recompute_layers = false;      // activation checkpointing: layer inputs + one layer
  int64_t kv_tokens = 0;              // KV cache positions (generation)
};

struct MemoryEstimate {
  double weights = 0, trainable = 0, activations = 0, kv_cache = 0;
  double runtime = 24.0 * 1024 * 1024;  // the program, its libraries and thread stacks (measured)
  double total() const { return weights + trainable + activations + kv_cache + runtime; }
};

MemoryEstimate estimate_memory(const HFConfig& c, const MemoryPlan& plan);
// Bytes per parameter of a stored or converted dtype (q8_0 / q4_0 with their block scales).
double bytes_per_param(DType t);
// The config's stored dtype (torch_dtype; f32 when absent).
DType stored_dtype_of(const HFConfig& c);

// Bytes this process may still allocate: MemAvailable (/proc/meminfo), lowered to the cgroup's
// memory.max − memory.current when that is smaller. PEFT_MEMORY_LIMIT_MB overrides it (a cap a
// user sets on a shared machine; the tests use it). 0 when unknown (the guard then passes).
double available_memory_bytes();

// Throws Error "WHAT needs about X MB (weights …, …) but only Y MB are available" when the
// estimate exceeds what is available.
void check_memory(const MemoryEstimate& e, const std::string& what);

}  // namespace peft
