#include "ops/dropout.h"

namespace peft {
namespace {

constexpr int64_t kParallelMin = 1 << 14;

// m_i / (1 − p): the factor element i is multiplied by.
inline float keep_factor(const Rng& rng, uint64_t first, int64_t i, float p, float inv) {
  return rng.uniform_at(first + uint64_t(i)) >= p ? inv : 0.0f;
}

}  // namespace

void dropout_forward(const Tensor& x, float p, const Rng& rng, uint64_t first, Tensor& y) {
  const float inv = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) py[i] = px[i] * keep_factor(rng, first, i, p, inv);
}

void dropout_backward(const Tensor& dy, float p, const Rng& rng, uint64_t first, Tensor& dx) {
  const float inv = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  const float* g = dy.data<float>();
  float* pd = dx.data<float>();
  const int64_t n = dy.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) pd[i] += g[i] * keep_factor(rng, first, i, p, inv);
}

Var dropout(const Var& x, float p, Rng& rng) {
  if (!(p >= 0.0f && p <= 1.0f)) fail("dropout probability {} is outside [0, 1]", p);
  if (p == 0.0f) return x;
  const uint64_t first = rng.reserve(uint64_t(x->value.numel()));
  Tensor y = Tensor::zeros(x->value.shape());
  dropout_forward(x->value, p, rng, first, y);
  const bool grad = needs_grad({&x});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, x, p, mask = Rng(rng.seed(), rng.stream()), first]() {
    if (!result->grad.defined()) return;
    dropout_backward(result->grad, p, mask, first, x->grad_buffer());
  });
  return result;
}

}  // namespace peft
