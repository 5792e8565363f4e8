// Normalisation over the last dimension C of x [..., C] (N = numel / C rows), computed in f32
// like Hugging Face's Qwen2RMSNorm / LlamaRMSNorm and torch.nn.LayerNorm:
//   rms_norm:   y = x · rstd · w,            rstd = 1 / sqrt(mean(x²) + eps)
//   layer_norm: y = (x − μ) · rstd · γ + β,  rstd = 1 / sqrt(σ² + eps), σ² biased (÷ C)
// Frozen weights may be stored bf16 / f16; trainable ones are f32. Frozen weights get no
// gradient buffer and their reductions are skipped.
#pragma once

#include "autograd/tape.h"

namespace peft {

Var rms_norm(const Var& x, const Var& weight, float eps);
// bias may be null (no β).
Var layer_norm(const Var& x, const Var& weight, const Var& bias, float eps);

// Raw kernels. The forwards also write the per-row statistics the backwards need (rstd [N],
// mean [N]); the backwards accumulate (+=) into whichever gradient is non-null.
void rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& y, Tensor& rstd);
// dx = rstd · (g − x̂ · mean(g ⊙ x̂)),  g = dy ⊙ w,  x̂ = x · rstd;  dw += Σ_rows dy ⊙ x̂
void rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                       Tensor* dx, Tensor* dweight);
void layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, float eps,
                        Tensor& y, Tensor& mean, Tensor& rstd);
// dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)),  g = dy ⊙ γ;  dγ += Σ_rows dy ⊙ x̂;  dβ += Σ_rows dy
void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& mean, const Tensor& rstd, Tensor* dx, Tensor* dweight,
                         Tensor* dbias);

}  // namespace peft
