#include "ops/rope.h"

#include <cmath>
#include <optional>
#include <vector>

namespace peft {
namespace {

void check_rope_args(const Tensor& x, const Tensor* positions) {
  PEFT_CHECK(x.ndim() == 4 && x.dtype() == DType::F32 && x.dim(3) % 2 == 0,
             "rope: x must be f32 [B, T, H, D] with D even, got {}", x.describe());
  if (positions) {
    PEFT_CHECK(positions->dtype() == DType::I32 && positions->ndim() == 2 &&
                   (positions->dim(0) == x.dim(0) || positions->dim(0) == 1) &&
                   positions->dim(1) == x.dim(1),
               "rope: positions must be i32 [B, T] or [1, T] for x {}, got {}", x.describe(),
               positions->describe());
  }
}

// out = rotation of in by sign·a per (token, frequency); accumulate adds instead of writing.
// sign = +1 is the forward, −1 the backward (the transpose of a rotation is its inverse).
void rope_rotate(const Tensor& in, const Tensor* positions, int64_t start, float theta, float sign,
                 bool accumulate, Tensor& out) {
  check_rope_args(in, positions);
  const int64_t B = in.dim(0), T = in.dim(1), H = in.dim(2), D = in.dim(3), half = D / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[size_t(i)] = float(1.0 / std::pow(double(theta), double(2 * i) / double(D)));
  const int32_t* pos = positions ? positions->data<int32_t>() : nullptr;
  const bool shared = positions && positions->dim(0) == 1;
  const float* px = in.data<float>();
  float* py = out.data<float>();
#pragma omp parallel
  {
    std::vector<float> cos_a(static_cast<size_t>(half)), sin_a(static_cast<size_t>(half));
#pragma omp for schedule(static)
    for (int64_t row = 0; row < B * T; ++row) {  // row = b·T + t
      const int64_t b = row / T, t = row % T;
      const int64_t p = pos ? pos[(shared ? 0 : b) * T + t] : start + t;
      for (int64_t i = 0; i < half; ++i) {
        const double a = double(float(p) * inv_freq[size_t(i)]);  // f32 angle, as in HF
        cos_a[size_t(i)] = float(std::cos(a));
        sin_a[size_t(i)] = sign * float(std::sin(a));
      }
      for (int64_t h = 0; h < H; ++h) {
        const float* x1 = px + (row * H + h) * D;
        const float* x2 = x1 + half;
        float* y1 = py + (row * H + h) * D;
        float* y2 = y1 + half;
        for (int64_t i = 0; i < half; ++i) {
          const float c = cos_a[size_t(i)], s = sin_a[size_t(i)];
          const float r1 = x1[i] * c - x2[i] * s, r2 = x2[i] * c + x1[i] * s;
          y1[i] = accumulate ? y1[i] + r1 : r1;
          y2[i] = accumulate ? y2[i] + r2 : r2;
        }
      }
    }
  }
}

Var rope_impl(const Var& x, const Tensor* positions, int64_t start, float theta) {
  Tensor y = Tensor::zeros(x->value.shape());
  rope_forward(x->value, positions, start, theta, y);
  const bool grad = needs_grad({&x});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  std::optional<Tensor> pos;
  if (positions) pos = *positions;
  active_tape()->record([result, x, pos, start, theta]() {
    if (!result->grad.defined()) return;
    rope_backward(result->grad, pos ? &*pos : nullptr, start, theta, x->grad_buffer());
  });
  return result;
}

}  // namespace

void rope_forward(const Tensor& x, const Tensor* positions, int64_t start, float theta, Tensor& y) {
  rope_rotate(x, positions, start, theta, 1.0f, false, y);
}

void rope_backward(const Tensor& dy, const Tensor* positions, int64_t start, float theta,
                   Tensor& dx) {
  rope_rotate(dy, positions, start, theta, -1.0f, true, dx);
}

Var rope(const Var& x, const Tensor& positions, float theta) {
  return rope_impl(x, &positions, 0, theta);
}

Var rope(const Var& x, int64_t start, float theta) {
  return rope_impl(x, nullptr, start, theta);
}

}  // namespace peft
