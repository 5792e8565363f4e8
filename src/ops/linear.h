// Linear layer with an optional fused LoRA branch (Hu et al. 2021):
//   y[N, out] = x[N, in] · Wᵀ + b + s · (dropout(x) · Aᵀ) · Bᵀ,   A [r, in], B [out, r], s = α / r
// x may have any leading shape [..., in]; W may be stored f32, bf16, f16, q8_0 or q4_0. A frozen
// W (requires_grad false) gets no gradient and its dW GEMM is skipped; A and B get gradients.
#pragma once

#include "autograd/tape.h"
#include "core/rng.h"

namespace peft {

struct LoraBranch {
  Var A;  // [r, in]
  Var B;  // [out, r]
  float scale = 1.0f;
  float dropout = 0.0f;  // applied to x on the LoRA path only; the method sets it while training
  Rng* rng = nullptr;    // dropout mask source; required when dropout > 0
};

Var linear(const Var& x, const Var& weight, const Var& bias = nullptr,
           const LoraBranch* lora = nullptr);

// Raw kernels over flattened rows. linear_backward accumulates (+=) into whichever of dx, dw, db
// is non-null; dw requires an f32 weight.
void linear_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y);
void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor* dx,
                     Tensor* dw, Tensor* db);

}  // namespace peft
