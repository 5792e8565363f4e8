// Scaled dot-product attention, fused and flash-style (Dao 2022; FlashAttention-2's backward):
//   s_ij = scale · q_i · k_j (masked: −inf),  p_ij = exp(s_ij − lse_i),  o_i = Σ_j p_ij v_j
// Keys are visited in blocks with a running max and sum (online softmax), so neither the forward
// nor the backward ever holds the [T, T] score matrix: memory is O(T·D), plus lse_i per
// (row, head). The backward recomputes the scores block by block and uses
//   D_i = Σ_d dO_id · O_id,  ds_ij = p_ij · (dO_i · v_j − D_i),
//   dq_i = scale · Σ_j ds_ij k_j,  dk_j = scale · Σ_i ds_ij q_i,  dv_j = Σ_i p_ij dO_i
// in two passes (dq over query blocks, dk / dv over key blocks), so no two threads write the same
// gradient row and results do not depend on the thread count.
//
// Layouts (the natural ones after the q / k / v projections, [B·T, H·D]):
//   q, out [B, Tq, H, D];  k, v [B, Tk, Hkv, D];  query head h reads kv head h / (H / Hkv) (GQA).
//   prefix_k, prefix_v [B, P, Hkv, D] or [1, P, Hkv, D] (shared by the batch): P extra keys and
//   values (prefix tuning, P-Tuning v2) that every query sees, before the sequence's own keys and
//   outside causality; they receive gradients like k and v.
// Causal: query i (at position i + Tk − Tq, i.e. the queries are the last Tq of the Tk positions,
// as with a KV cache) sees keys j ≤ i + Tk − Tq. A query that sees no key at all (everything
// masked) outputs zeros and passes no gradient.
#pragma once

#include "autograd/tape.h"

namespace peft {

struct AttentionOptions {
  bool causal = true;
  float scale = 0.0f;    // 0: 1 / √D
  Tensor key_mask;       // optional [B, Tk], i32 or f32: nonzero = valid key, 0 = padding
  Tensor segment_ids;    // optional i32 [B, T] (needs Tq == Tk): attend only within a segment
  Tensor prefix_mask;    // optional [B, P] or [1, P], i32 or f32: nonzero = valid prefix slot
  int64_t block_q = 64;  // query rows per tile
  int64_t block_k = 64;  // keys per tile (tests shrink both to cross tile edges)
};

// The tensors of one attention call; prefix_k / prefix_v are both undefined when absent. As
// gradients (attention_backward), an undefined member is one that is not wanted.
struct AttentionTensors {
  Tensor q = {}, k = {}, v = {}, prefix_k = {}, prefix_v = {};
};

Var attention(const Var& q, const Var& k, const Var& v, const AttentionOptions& opts = {},
              const Var& prefix_k = nullptr, const Var& prefix_v = nullptr);

// Raw kernels. attention_forward writes out [B, Tq, H, D] and lse [B, Tq, H] (−inf for a query
// that sees no key); attention_backward accumulates (+=) into the defined members of grads.
void attention_forward(const AttentionTensors& in, const AttentionOptions& opts, Tensor& out,
                       Tensor& lse);
void attention_backward(const Tensor& dout, const AttentionTensors& in, const Tensor& out,
                        const Tensor& lse, const AttentionOptions& opts, AttentionTensors grads);

// The simple reference (tests and bench only): materialises the probabilities
// probs [B, H, Tq, P + Tk] (prefix columns first) with one GEMM per head. Same masking rules.
void attention_naive_forward(const AttentionTensors& in, const AttentionOptions& opts, Tensor& out,
                             Tensor& probs);
void attention_naive_backward(const Tensor& dout, const AttentionTensors& in, const Tensor& probs,
                              const AttentionOptions& opts, AttentionTensors grads);

}  // namespace peft
