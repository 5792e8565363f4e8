#include "train/adamw.h"

#include <cmath>

namespace peft {

AdamW::AdamW(ParamStore& params, AdamWConfig config) : params_(params), config_(config) {
  PEFT_CHECK(params.allocated(), "AdamW over unallocated parameters");
  m_ = Tensor::zeros({params.size()});
  v_ = Tensor::zeros({params.size()});
}

void AdamW::step(float lr) {
  ++t_;
  const float b1 = config_.beta1, b2 = config_.beta2, eps = config_.eps;
  const float decay = 1.0f - lr * config_.weight_decay;
  const float bias1 = 1.0f - std::pow(b1, float(t_));
  const float bias2_sqrt = std::sqrt(1.0f - std::pow(b2, float(t_)));
  const float step_size = lr / bias1;
  float* p = params_.values().data<float>();
  const float* g = params_.grads().data<float>();
  float* m = m_.data<float>();
  float* v = v_.data<float>();
  const int64_t n = params_.size();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    p[i] *= decay;
    m[i] = b1 * m[i] + (1.0f - b1) * g[i];
    v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    const float denom = std::sqrt(v[i]) / bias2_sqrt + eps;
    p[i] -= step_size * m[i] / denom;
  }
}

}  // namespace peft
