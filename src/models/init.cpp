#include "models/init.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "models/registry.h"

namespace peft {
namespace {

// Normal draws two at a time: one Philox block gives both Box–Muller outputs, so element i of a
// tensor is output (i mod 2) of block i / 2 of the tensor's stream, whatever the thread count.
inline void normal_pair(const Rng& rng, uint64_t block, float& a, float& b) {
  const auto r = philox4x32(block, rng.stream(), rng.seed());
  const float u1 = (float(r[0] >> 8) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1]: finite log
  const float u2 = float(r[1] >> 8) * (1.0f / 16777216.0f);
  const float radius = std::sqrt(-2.0f * std::log(u1));
  const float angle = 6.2831853071795864f * u2;
  a = radius * std::cos(angle);
  b = radius * std::sin(angle);
}

// The tensor of one spec, filled in row blocks straight into its final dtype (the f32 staging
// is one row per thread).
Tensor generate(const TensorSpec& spec, DType dtype, const Rng& rng, float stddev) {
  Tensor t = Tensor::zeros(spec.shape, dtype);
  const int64_t rows = t.rows(), cols = t.row_numel();
  const size_t row_bytes = dtype_bytes(dtype, cols);
  char* base = static_cast<char*>(t.raw());
#pragma omp parallel if (rows * cols > (int64_t(1) << 16))
  {
    std::vector<float> buf(static_cast<size_t>(cols) + 1);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      if (spec.init != TensorSpec::Init::Normal || r == spec.zero_row) {
        std::fill(buf.begin(), buf.end(), spec.init == TensorSpec::Init::Ones ? 1.0f : 0.0f);
      } else {
        const uint64_t first = uint64_t(r * cols), last = first + uint64_t(cols);
        for (uint64_t i = first & ~uint64_t(1); i < last; i += 2) {
          float a, b;
          normal_pair(rng, i / 2, a, b);
          if (i >= first) buf[i - first] = stddev * a;
          if (i + 1 < last) buf[i + 1 - first] = stddev * b;
        }
      }
      convert_from_f32(dtype, buf.data(), base + size_t(r) * row_bytes, cols);
    }
  }
  return t;
}

}  // namespace

int64_t write_random_model(const HFConfig& config, const std::string& dir,
                           const InitOptions& opts) {
  if (opts.dtype != DType::F32 && opts.dtype != DType::BF16)
    fail("init dtype {} is not supported (expected f32 or bf16)", dtype_name(opts.dtype));
  const ArchSpec& arch = arch_for(config.model_type);
  HFConfig c = config;
  c.torch_dtype = opts.dtype == DType::F32 ? "float32" : "bfloat16";
  std::vector<TensorSpec> specs = arch.tensors(c);
  std::vector<TensorToWrite> list;
  int64_t params = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    params += shape_numel(specs[i].shape);
    const TensorSpec* spec = &specs[i];
    // One Philox stream per tensor (its index in the table): reproducible and order-free.
    const Rng rng(opts.seed, uint64_t(i) + 1);
    const float stddev = float(c.initializer_range);
    list.push_back({spec->name, opts.dtype, spec->shape, [spec, &opts, rng, stddev] {
                      return generate(*spec, opts.dtype, rng, stddev);
                    }});
  }
  nlohmann::json j = hf_config_to_json(c);
  j["transformers_version"] = "4.44.2";
  write_safetensors(join_path(dir, "model.safetensors"), list);
  write_json_atomic(join_path(dir, "config.json"), j);
  return params;
}

}  // namespace peft
