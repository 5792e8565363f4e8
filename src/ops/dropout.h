// Inverted dropout (torch.nn.Dropout in training mode):
//   y_i = x_i · m_i / (1 − p),  m_i = [u_i ≥ p],  u_i = rng.uniform_at(first + i)
// where first = rng.reserve(numel). Element i's draw depends only on (seed, stream, first + i), so
// the mask is the same for any thread count, and backward regenerates it instead of storing it.
// Identity (the input Var itself, no draws reserved) when p = 0; p = 1 drops everything. Whether
// to drop at all is the caller's: the ForwardContext's `training` (models/hooks.h), never whether
// a tape records.
#pragma once

#include "autograd/tape.h"
#include "core/rng.h"

namespace peft {

// Throws Error unless 0 ≤ p ≤ 1.
Var dropout(const Var& x, float p, Rng& rng);

// Raw kernels: y = x ⊙ m / (1 − p);  dx += dy ⊙ m / (1 − p).
void dropout_forward(const Tensor& x, float p, const Rng& rng, uint64_t first, Tensor& y);
void dropout_backward(const Tensor& dy, float p, const Rng& rng, uint64_t first, Tensor& dx);

}  // namespace peft
