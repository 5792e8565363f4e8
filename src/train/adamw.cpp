#include "train/adamw.h"

#include <cmath>

namespace peft {

AdamW::AdamW(ParamStore& params, AdamWConfig config, int64_t begin, int64_t end)
    : params_(params), config_(config), begin_(begin), end_(end < 0 ? params.size() : end) {
  PEFT_CHECK(params.allocated(), "AdamW over unallocated parameters");
  PEFT_CHECK(0 <= begin_ && begin_ <= end_ && end_ <= params.size(), "AdamW range [{}, {}) of {}",
             begin_, end_, params.size());
  m_ = Tensor::zeros({end_ - begin_});
  v_ = Tensor::zeros({end_ - begin_});
}

void AdamW::step(float lr) {
  ++t_;
  const float b1 = config_.beta1, b2 = config_.beta2, eps = config_.eps;
  const float decay = 1.0f - lr * config_.weight_decay;
  const float bias1 = 1.0f - std::pow(b1, float(t_));
  const float bias2_sqrt = std::sqrt(1.0f - std::pow(b2, float(t_)));
  const float step_size = lr / bias1;
  float* p = params_.values().data<float>() + begin_;
  const float* g = params_.grads().data<float>() + begin_;
  float* m = m_.data<float>();
  float* v = v_.data<float>();
  const int64_t n = end_ - begin_;
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
