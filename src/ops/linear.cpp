#include "ops/linear.h"

#include <optional>

#include "kernels/gemm.h"

namespace peft {

void linear_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) {
  const int64_t in = weight.dim(1), out = weight.dim(0);
  const int64_t n = x.numel() / in;
  matmul_x_wt(x.data<float>(), n, weight, y.data<float>(), 0.0f);
  if (bias) {
    const float* b = bias->data<float>();
    float* py = y.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < out; ++j) py[i * out + j] += b[j];
  }
}

void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor* dx,
                     Tensor* dw, Tensor* db) {
  const int64_t in = weight.dim(1), out = weight.dim(0);
  const int64_t n = x.numel() / in;
  if (dx) matmul_dy_w(dy.data<float>(), n, weight, dx->data<float>(), 1.0f);
  if (dw) {  // dW[out, in] += dyᵀ · x
    gemm_f32(true, false, out, in, n, 1.0f, dy.data<float>(), out, x.data<float>(), in, 1.0f,
             dw->data<float>(), in);
  }
  if (db) {
    const float* g = dy.data<float>();
    float* b = db->data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < out; ++j) {
      float acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += g[i * out + j];
      b[j] += acc;
    }
  }
}

Var linear(const Var& x, const Var& weight, const Var& bias, const LoraBranch* lora) {
  const Tensor& w = weight->value;
  PEFT_CHECK(w.ndim() == 2 && x->value.dim(-1) == w.dim(1), "linear: x {} with weight {}",
             x->value.describe(), w.describe());
  const int64_t in = w.dim(1), out = w.dim(0);
  const int64_t n = x->value.numel() / in;
  Shape out_shape = x->value.shape();
  out_shape.back() = out;
  Tensor y = Tensor::zeros(out_shape);
  linear_forward(x->value, w, bias ? &bias->value : nullptr, y);

  // LoRA branch: xd = dropout(x), u = xd · Aᵀ [N, r], y += s · u · Bᵀ.
  Tensor xd, u, keep;
  if (lora) {
    const int64_t r = lora->A->value.dim(0);
    PEFT_CHECK(
        lora->A->value.dim(1) == in && lora->B->value.dim(0) == out && lora->B->value.dim(1) == r,
        "LoRA A {} / B {} do not fit weight {}", lora->A->value.describe(),
        lora->B->value.describe(), w.describe());
    xd = x->value;
    if (lora->dropout > 0.0f) {
      PEFT_CHECK(lora->rng != nullptr, "LoRA dropout needs an Rng");
      keep = Tensor::zeros(x->value.shape());
      xd = Tensor::zeros(x->value.shape());
      const float p = lora->dropout, inv = 1.0f / (1.0f - p);
      const uint64_t first = lora->rng->reserve(uint64_t(x->value.numel()));
      const float* px = x->value.data<float>();
      float* pk = keep.data<float>();
      float* pd = xd.data<float>();
      for (int64_t i = 0, total = x->value.numel(); i < total; ++i) {
        pk[i] = lora->rng->uniform_at(first + uint64_t(i)) >= p ? inv : 0.0f;
        pd[i] = px[i] * pk[i];
      }
    }
    u = Tensor::zeros({n, r});
    gemm_f32(false, true, n, r, in, 1.0f, xd.data<float>(), in, lora->A->value.data<float>(), in,
             0.0f, u.data<float>(), r);
    gemm_f32(false, true, n, out, r, lora->scale, u.data<float>(), r, lora->B->value.data<float>(),
             r, 1.0f, y.data<float>(), out);
  }

  // Both needs_grad calls run (no ||): a watching tape notes the LoRA factors as read even when
  // x already needs a gradient.
  bool grad = needs_grad({&x, &weight, &bias});
  if (lora) grad = needs_grad({&lora->A, &lora->B}) || grad;
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;

  std::optional<LoraBranch> branch;
  if (lora) branch = *lora;
  active_tape()->record([result, x, weight, bias, branch, xd, u, keep, n, in, out]() {
    const Tensor& dy = result->grad;
    if (!dy.defined()) return;
    linear_backward(dy, x->value, weight->value, x->requires_grad ? &x->grad_buffer() : nullptr,
                    weight->requires_grad ? &weight->grad_buffer() : nullptr,
                    bias && bias->requires_grad ? &bias->grad_buffer() : nullptr);
    if (!branch) return;
    const LoraBranch& L = *branch;
    const int64_t r = L.A->value.dim(0);
    const float* pdy = dy.data<float>();
    if (L.B->requires_grad)  // dB[out, r] += s · dyᵀ · u
      gemm_f32(true, false, out, r, n, L.scale, pdy, out, u.data<float>(), r, 1.0f,
               L.B->grad_buffer().data<float>(), r);
    Tensor du = Tensor::zeros({n, r});  // du = s · dy · B
    gemm_f32(false, false, n, r, out, L.scale, pdy, out, L.B->value.data<float>(), r, 0.0f,
             du.data<float>(), r);
    if (L.A->requires_grad)  // dA[r, in] += duᵀ · xd
      gemm_f32(true, false, r, in, n, 1.0f, du.data<float>(), r, xd.data<float>(), in, 1.0f,
               L.A->grad_buffer().data<float>(), in);
    if (x->requires_grad) {  // dx += (du · A) ⊙ keep
      float* dx = x->grad_buffer().data<float>();
      if (!keep.defined()) {
        gemm_f32(false, false, n, in, r, 1.0f, du.data<float>(), r, L.A->value.data<float>(), in,
                 1.0f, dx, in);
      } else {
        Tensor dxd = Tensor::zeros({n, in});
        gemm_f32(false, false, n, in, r, 1.0f, du.data<float>(), r, L.A->value.data<float>(), in,
                 0.0f, dxd.data<float>(), in);
        const float* pk = keep.data<float>();
        const float* pd = dxd.data<float>();
        for (int64_t i = 0; i < n * in; ++i) dx[i] += pd[i] * pk[i];
      }
    }
  });
  return result;
}

}  // namespace peft
