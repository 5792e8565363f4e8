// Rotary position embedding (Su et al. 2021) in Hugging Face's rotate_half convention: each head
// vector splits into halves x1 = x[:D/2], x2 = x[D/2:], and with a_i = p · θ^(−2i/D) at position p
//   y1 = x1·cos a − x2·sin a,   y2 = x2·cos a + x1·sin a      (y = x·cos + rotate_half(x)·sin)
// The backward is the rotation by −a: dx1 = dy1·cos a + dy2·sin a, dx2 = dy2·cos a − dy1·sin a.
// x is [B, T, H, D] (D even). Like transformers, the angle p · inv_freq_i is rounded to f32
// (inv_freq_i the f32 nearest θ^(−2i/D)), so long positions rotate as they do in HF; cos and sin
// of that angle are then exact to f32.
#pragma once

#include "autograd/tape.h"

namespace peft {

// positions: i32 [B, T] (or [1, T], shared by the batch), one position per token.
Var rope(const Var& x, const Tensor& positions, float theta);
// Positions start, start + 1, ... along T for every batch row (e.g. after a KV cache of length
// start).
Var rope(const Var& x, int64_t start, float theta);

// Raw kernels. positions may be null, then token t has position start + t. rope_forward writes y;
// rope_backward accumulates (+=) into dx.
void rope_forward(const Tensor& x, const Tensor* positions, int64_t start, float theta, Tensor& y);
void rope_backward(const Tensor& dy, const Tensor* positions, int64_t start, float theta,
                   Tensor& dx);

}  // namespace peft
