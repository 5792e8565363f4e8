#include "ops/softmax.h"

#include <cmath>
#include <limits>

namespace peft {

void softmax_forward(const Tensor& x, Tensor& y) {
  const int64_t n = x.ndim() ? x.dim(-1) : 1;
  const int64_t rows = n ? x.numel() / n : 0;
  const float* px = x.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = px + r * n;
    float* yr = py + r * n;
    const float m = row_max(xr, n);
    if (m == -std::numeric_limits<float>::infinity()) {  // fully masked row
      std::fill(yr, yr + n, 0.0f);
      continue;
    }
    const float inv = float(1.0 / exp_shifted_sum(xr, n, m, yr));
    for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
  }
}

void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx) {
  const int64_t n = y.ndim() ? y.dim(-1) : 1;
  const int64_t rows = n ? y.numel() / n : 0;
  const float* pg = dy.data<float>();
  const float* py = y.data<float>();
  float* pd = dx.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = pg + r * n;
    const float* yr = py + r * n;
    float* dr = pd + r * n;
    double lanes[kReductionLanes] = {};  // Σ_j dy_j · y_j
    int64_t i = 0;
    for (; i + kReductionLanes <= n; i += kReductionLanes)
      for (int64_t u = 0; u < kReductionLanes; ++u) lanes[u] += double(gr[i + u]) * yr[i + u];
    for (; i < n; ++i) lanes[0] += double(gr[i]) * yr[i];
    double dot = 0;
    for (double v : lanes) dot += v;
    const float d = float(dot);
    for (int64_t j = 0; j < n; ++j) dr[j] += yr[j] * (gr[j] - d);
  }
}

Var softmax(const Var& x) {
  PEFT_CHECK(x->value.dtype() == DType::F32, "softmax: f32 input expected, got {}",
             x->value.describe());
  Tensor y = Tensor::zeros(x->value.shape());
  softmax_forward(x->value, y);
  const bool grad = needs_grad({&x});
  Var result = make_output(y, grad);
  if (!grad) return result;
  active_tape()->record([result, x, y]() {
    if (!result->grad.defined()) return;
    softmax_backward(result->grad, y, x->grad_buffer());
  });
  return result;
}

}  // namespace peft
