// Token cross-entropy fused with the output projection (the LM head), so the [N, V] logits are
// never all alive (V = 151936, N = 512 would be 311 MB in f32):
//   z_i = W · h_i,   ℓ_i = logsumexp(z_i) − z_i[t_i],   loss = Σ_{i: t_i ≠ ignore} ℓ_i / normaliser
//   ∂ℓ_i/∂z_i = softmax(z_i) − onehot(t_i),   dh_i = (∂ℓ_i/∂z_i) · W,   dW = Σ_i (∂ℓ_i/∂z_i)ᵀ h_i
// Rows are processed in chunks: logits of a chunk, their log-softmax, the loss and, when a
// gradient is wanted, dlogits computed in place and folded into dh (and dW) straight away. The
// gradients are therefore computed in the forward and stored; the backward only scales them by
// the upstream scalar. Rows whose target is ignore_index are skipped entirely (no logits).
// normaliser defaults to the count of non-ignored targets (a mean); trainers that accumulate
// micro-batches pass the token count of the whole batch instead. All targets ignored: loss 0,
// zero gradients. A target outside [0, V) other than ignore_index is a data error.
#pragma once

#include "autograd/tape.h"

namespace peft {

struct CrossEntropyOptions {
  int32_t ignore_index = -100;
  double normaliser = 0;     // > 0: loss = sum / normaliser; 0: the count of non-ignored targets
  int64_t chunk_rows = 128;  // logits rows alive at once
};

struct CrossEntropyStats {
  double sum = 0;     // Σ ℓ_i over non-ignored targets
  int64_t count = 0;  // number of non-ignored targets
  int64_t top1 = 0;   // of those, how many are the row's argmax (first index on ties, as torch)
};

// hidden [N, C] (or [..., C]); weight [V, C] stored f32, bf16, f16, q8_0 or q4_0 (a trainable one
// must be f32); targets i32 with N elements. Returns the scalar loss; stats (if given) receives
// the sum and count.
Var cross_entropy(const Var& hidden, const Var& weight, const Tensor& targets,
                  const CrossEntropyOptions& opts = {}, CrossEntropyStats* stats = nullptr);

// The same on given logits [N, V] (tests, evaluation); opts.chunk_rows is unused.
Var cross_entropy_from_logits(const Var& logits, const Tensor& targets,
                              const CrossEntropyOptions& opts = {},
                              CrossEntropyStats* stats = nullptr);

// Raw kernels. When dh / dw / dlogits are non-null they accumulate (+=) grad_scale times the
// gradient of the summed loss Σ ℓ_i (a trainer passes 1 / normaliser); dw needs an f32 weight.
CrossEntropyStats cross_entropy_forward(const Tensor& hidden, const Tensor& weight,
                                        const Tensor& targets, const CrossEntropyOptions& opts,
                                        float grad_scale, Tensor* dh, Tensor* dw);
CrossEntropyStats cross_entropy_logits_forward(const Tensor& logits, const Tensor& targets,
                                               const CrossEntropyOptions& opts, float grad_scale,
                                               Tensor* dlogits);
// The backward of the fused op: grad += upstream · stored (stored from cross_entropy_forward).
void cross_entropy_backward(float upstream, const Tensor& stored, Tensor& grad);

}  // namespace peft
