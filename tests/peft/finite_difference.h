// Shared by the method tests (test_methods.cpp, test_bottleneck_adapter.cpp): tiny random models
// on disk, a fixed batch, and the check of every trainable parameter of a MethodSet against
// central differences through a whole model.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/hf_config.h"
#include "models/init.h"
#include "models/model.h"
#include "models/registry.h"
#include "peft/method.h"
#include "testing.h"

namespace peft::testing {

// A tiny random model of `arch` (preset "tiny") in TempDir()/PREFIX_ARCH, written once per
// process and seed.
inline std::string tiny_model_dir(const std::string& prefix, const std::string& arch,
                                  uint64_t seed) {
  const std::string dir = ::testing::TempDir() + "/" + prefix + "_" + arch;
  if (std::filesystem::exists(dir + "/model.safetensors")) return dir;
  std::filesystem::create_directories(dir);
  InitOptions init;
  init.seed = seed;
  write_random_model(parse_hf_config(preset_config(arch_for(arch), "tiny"), "tiny"), dir, init);
  return dir;
}

// Two sequences of five token ids below 400.
inline ModelInputs tiny_batch() {
  ModelInputs in;
  std::vector<int32_t> ids(10);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((37 * i + 5) % 400);
  in.input_ids = Tensor::from_vector_i32(ids, {2, 5});
  return in;
}

// Every parameter of `set` (allocated and initialised), through `model` on `in`, along a random
// direction: the analytic directional derivative of Σ ℓ (one backward pass) against
// Richardson-extrapolated central differences (the f32 model evaluated at ±h and ±2h, combined in
// f64). Each derivative must also be clearly non-zero, so that every piece is seen to matter.
inline void expect_gradients_match_finite_differences(Model& model, MethodSet& set,
                                                      const ModelInputs& in) {
  CrossEntropyOptions sum_loss;
  sum_loss.normaliser = 1;
  auto loss_value = [&] {
    NoGradGuard no_grad;
    CrossEntropyStats stats;
    model.loss(model.forward(in, {.hooks = set.hooks()}), in.input_ids, sum_loss, &stats);
    return stats.sum;
  };
  {
    Tape tape;
    tape.backward(model.loss(model.forward(in, {.hooks = set.hooks()}), in.input_ids, sum_loss));
  }
  ASSERT_GT(set.params().entries().size(), 0u);
  for (const auto& e : set.params().entries()) {
    Tensor& w = e.var->value;
    const Vec dir = random_vec(size_t(w.numel()), 17);
    const std::vector<float> g = e.var->grad.to_vector(), w0 = w.to_vector();
    double analytic = 0;
    for (size_t i = 0; i < g.size(); ++i) analytic += double(g[i]) * dir[i];
    auto central = [&](double h) {
      double l[2];
      for (int k = 0; k < 2; ++k) {
        for (size_t i = 0; i < w0.size(); ++i)
          w.data<float>()[i] = float(w0[i] + (k ? -h : h) * dir[i]);
        l[k] = loss_value();
      }
      return (l[0] - l[1]) / (2 * h);
    };
    const double numeric = (4 * central(1e-3) - central(2e-3)) / 3;
    std::memcpy(w.data<float>(), w0.data(), w0.size() * sizeof(float));
    EXPECT_NEAR(analytic, numeric, 1e-3 + 1e-2 * std::fabs(numeric)) << e.name;
    EXPECT_GT(std::fabs(analytic), 1e-4) << e.name;
  }
}

}  // namespace peft::testing
