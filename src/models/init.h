// Random initialisation of a model folder in Hugging Face layout, as transformers' _init_weights
// does: matrices and embeddings ~ normal(0, initializer_range), the padding row of the embeddings
// zero, norm weights 1, biases 0. The weights stream to disk one tensor at a time (generate,
// write, free), so a 7B folder never holds two copies in memory.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "io/hf_config.h"

namespace peft {

struct InitOptions {
  uint64_t seed = 0;
  DType dtype = DType::F32;  // f32 or bf16 (torch_dtype float32 / bfloat16)
};

// Writes DIR/config.json and DIR/model.safetensors (atomically). Returns the parameter count.
int64_t write_random_model(const HFConfig& config, const std::string& dir, const InitOptions& opts);

}  // namespace peft
