#include "models/memory.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "core/error.h"

namespace peft {
namespace {

double read_number_file(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s == "max") return 0;
  return std::strtod(s.c_str(), nullptr);
}

double mb(double bytes) {
  return bytes / (1024.0 * 1024.0);
}

}  // namespace

double config_parameter_count(const HFConfig& c) {
  const double h = double(c.hidden_size), I = double(c.intermediate_size), V = double(c.vocab_size),
               L = double(c.num_hidden_layers);
  if (c.model_type == "bert") {
    const double embed = (V + double(c.max_position_embeddings) + double(c.type_vocab_size)) * h;
    const double layer = 4 * h * h + 4 * h + 2 * h * I + I + h + 4 * h;
    const double head = h * h + h + 2 * h + V + h * h + h;  // MLM transform + bias, pooler
    return embed + 2 * h + L * layer + head;
  }
  const double q = double(c.num_attention_heads * c.head_dim),
               kv = double(c.num_key_value_heads * c.head_dim);
  const double layer = h * (q + 2 * kv) + q * h + 3 * h * I + 2 * h + (q + 2 * kv) + h;
  return V * h * (c.tie_word_embeddings ? 1 : 2) + L * layer + h;
}

double bytes_per_param(DType t) {
  switch (t) {
    case DType::BF16:
    case DType::F16:
      return 2;
    case DType::Q8_0:
      return 34.0 / 32.0;
    case DType::Q4_0:
      return 18.0 / 32.0;
    default:
      return 4;
  }
}

DType stored_dtype_of(const HFConfig& c) {
  if (c.torch_dtype == "bfloat16") return DType::BF16;
  if (c.torch_dtype == "float16") return DType::F16;
  return DType::F32;
}

MemoryEstimate estimate_memory(const HFConfig& c, const MemoryPlan& plan) {
  MemoryEstimate e;
  e.weights = config_parameter_count(c) * plan.weight_bytes_per_param;
  e.trainable = plan.trainable_params * 4 * 4;  // value, gradient, AdamW m and v (f32)
  const double h = double(c.hidden_size), I = double(c.intermediate_size),
               L = double(c.num_hidden_layers);
  if (plan.tokens > 0) {
    // Per token and layer the tape keeps about a dozen hidden-sized vectors (norm inputs and
    // outputs, q / k / v, attention output, residuals) and four intermediate-sized ones (gate, up,
    // activation, product), f32; plus the chunked cross-entropy's working set.
    const double tokens = double(plan.batch) * double(plan.tokens);
    // (the cross-entropy keeps 128 rows of logits and their gradient: ops/cross_entropy.h)
    // With recomputation the tape keeps each layer's input, and one layer's activations (with
    // their gradients) live at a time in backward.
    const double per_token =
        plan.recompute_layers ? L * h + 2 * (12 * h + 4 * I) + 4 * h : L * (12 * h + 4 * I) + 4 * h;
    e.activations = tokens * per_token * 4 + std::min(128.0, tokens) * double(c.vocab_size) * 4 * 2;
  }
  if (plan.kv_tokens > 0)
    e.kv_cache = double(plan.kv_tokens) * L * 2 * double(c.num_key_value_heads * c.head_dim) * 4;
  return e;
}

double available_memory_bytes() {
  if (const char* cap = std::getenv("PEFT_MEMORY_LIMIT_MB"); cap && *cap)
    return std::strtod(cap, nullptr) * 1024.0 * 1024.0;
  double available = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);)
    if (line.rfind("MemAvailable:", 0) == 0)
      available = std::strtod(line.c_str() + 13, nullptr) * 1024.0;  // kB
  const double limit = read_number_file("/sys/fs/cgroup/memory.max");
  if (limit > 0) {
    const double in_group =
        std::max(0.0, limit - read_number_file("/sys/fs/cgroup/memory.current"));
    available = available > 0 ? std::min(available, in_group) : in_group;
  }
  return available;
}

void check_memory(const MemoryEstimate& e, const std::string& what) {
  const double available = available_memory_bytes();
  if (available <= 0 || e.total() <= available) return;
  std::string parts = fmt::format("weights {:.0f} MB", mb(e.weights));
  if (e.trainable > 0) parts += fmt::format(", trainable state {:.0f} MB", mb(e.trainable));
  if (e.activations > 0) parts += fmt::format(", activations {:.0f} MB", mb(e.activations));
  if (e.kv_cache > 0) parts += fmt::format(", KV cache {:.0f} MB", mb(e.kv_cache));
  fail(
      "{} needs about {:.0f} MB ({}) but only {:.0f} MB are available; refused before "
      "allocating (a smaller --batch-size / --max-len or --base-dtype bf16 / q8_0 needs less)",
      what, mb(e.total()), parts, mb(available));
}

}  // namespace peft
