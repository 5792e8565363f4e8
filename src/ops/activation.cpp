#include "ops/activation.h"

#include <cmath>

namespace peft {
namespace {

constexpr int64_t kParallelMin = 1 << 14;
constexpr float kSqrt2OverPi = 0.7978845608028654f;  // √(2/π)
constexpr float kGeluCubic = 0.044715f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;  // 1/√(2π)

inline float sigmoid_f(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}

inline float forward_one(Activation a, float x) {
  switch (a) {
    case Activation::Relu:
      return x > 0.0f ? x : 0.0f;
    case Activation::Silu:
      return x * sigmoid_f(x);
    case Activation::Gelu:
      return 0.5f * x * (1.0f + std::erf(x * kInvSqrt2));
    case Activation::GeluTanh:
      return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
    case Activation::Tanh:
      return std::tanh(x);
    case Activation::Sigmoid:
      return sigmoid_f(x);
  }
  return 0.0f;
}

// f'(x)
inline float derivative_one(Activation a, float x) {
  switch (a) {
    case Activation::Relu:
      return x > 0.0f ? 1.0f : 0.0f;
    case Activation::Silu: {
      const float s = sigmoid_f(x);
      return s * (1.0f + x * (1.0f - s));
    }
    case Activation::Gelu:  // Φ(x) + x·φ(x)
      return 0.5f * (1.0f + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
    case Activation::GeluTanh: {
      const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
      const float t = std::tanh(u);
      const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
      return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    case Activation::Tanh: {
      const float t = std::tanh(x);
      return 1.0f - t * t;
    }
    case Activation::Sigmoid: {
      const float s = sigmoid_f(x);
      return s * (1.0f - s);
    }
  }
  return 0.0f;
}

}  // namespace

Activation activation_from_name(std::string_view name) {
  if (name == "relu") return Activation::Relu;
  if (name == "silu" || name == "swish") return Activation::Silu;
  if (name == "gelu") return Activation::Gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::GeluTanh;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  fail(
      "unknown activation '{}' (expected relu, silu, swish, gelu, gelu_new, gelu_pytorch_tanh, "
      "tanh or sigmoid)",
      name);
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::Relu:
      return "relu";
    case Activation::Silu:
      return "silu";
    case Activation::Gelu:
      return "gelu";
    case Activation::GeluTanh:
      return "gelu_pytorch_tanh";
    case Activation::Tanh:
      return "tanh";
    case Activation::Sigmoid:
      return "sigmoid";
  }
  return "?";
}

void activation_forward(Activation a, const Tensor& x, Tensor& y) {
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) py[i] = forward_one(a, px[i]);
}

void activation_backward(Activation a, const Tensor& dy, const Tensor& x, Tensor& dx) {
  const float* g = dy.data<float>();
  const float* px = x.data<float>();
  float* pd = dx.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) pd[i] += g[i] * derivative_one(a, px[i]);
}

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& y) {
  const float* pg = gate.data<float>();
  const float* pu = up.data<float>();
  float* py = y.data<float>();
  const int64_t n = gate.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) py[i] = pg[i] * sigmoid_f(pg[i]) * pu[i];
}

void swiglu_backward(const Tensor& dy, const Tensor& gate, const Tensor& up, Tensor* dgate,
                     Tensor* dup) {
  const float* g = dy.data<float>();
  const float* pg = gate.data<float>();
  const float* pu = up.data<float>();
  float* dg = dgate ? dgate->data<float>() : nullptr;
  float* du = dup ? dup->data<float>() : nullptr;
  const int64_t n = gate.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float s = sigmoid_f(pg[i]);
    if (dg) dg[i] += g[i] * pu[i] * s * (1.0f + pg[i] * (1.0f - s));
    if (du) du[i] += g[i] * pg[i] * s;
  }
}

Var activation(const Var& x, Activation a) {
  Tensor y = Tensor::zeros(x->value.shape());
  activation_forward(a, x->value, y);
  const bool grad = needs_grad({&x});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, x, a]() {
    if (!result->grad.defined()) return;
    activation_backward(a, result->grad, x->value, x->grad_buffer());
  });
  return result;
}

Var swiglu(const Var& gate, const Var& up) {
  PEFT_CHECK(gate->value.shape() == up->value.shape(), "swiglu: gate {} with up {}",
             gate->value.describe(), up->value.describe());
  Tensor y = Tensor::zeros(gate->value.shape());
  swiglu_forward(gate->value, up->value, y);
  const bool grad = needs_grad({&gate, &up});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, gate, up]() {
    if (!result->grad.defined()) return;
    swiglu_backward(result->grad, gate->value, up->value,
                    gate->requires_grad ? &gate->grad_buffer() : nullptr,
                    up->requires_grad ? &up->grad_buffer() : nullptr);
  });
  return result;
}

}  // namespace peft
