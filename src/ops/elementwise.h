// Elementwise and shape ops: add, mul, scale, concat, slice, reshape, transpose, and the scalar
// reductions sum / mean (for losses and tests). All values and gradients are f32.
//
// Broadcasting is deliberately narrow: the second operand of add / mul has the first one's shape,
// or (leading 1s dropped) equals its trailing dimensions — a bias [C] over [N, C], a prefix
// [1, P, C] over [B, P, C]. The output always has the first operand's shape.
#pragma once

#include <vector>

#include "autograd/tape.h"

namespace peft {

// y = a + b
Var add(const Var& a, const Var& b);
// y = a ⊙ b
Var mul(const Var& a, const Var& b);
// y = s · x
Var scale(const Var& x, float s);
// Joins tensors that agree on every dimension but dim (negative counts from the end).
Var concat(const std::vector<Var>& xs, int dim);
// Elements [begin, end) of dimension dim, copied.
Var slice(const Var& x, int dim, int64_t begin, int64_t end);
// The same data with a new shape (shares storage; one dimension may be -1).
Var reshape(const Var& x, Shape shape);
// Swaps dimensions d0 and d1, copied.
Var transpose(const Var& x, int d0, int d1);
// y = Σ_i x_i, a 0-d scalar.
Var sum(const Var& x);
// y = Σ_i x_i / numel, a 0-d scalar.
Var mean(const Var& x);

// True when b may be broadcast over a by the rule above.
bool broadcasts_over(const Shape& a, const Shape& b);

// Raw kernels; the backward ones accumulate (+=) into whichever gradient is non-null.
void add_forward(const Tensor& a, const Tensor& b, Tensor& y);
void add_backward(const Tensor& dy, Tensor* da, Tensor* db);
void mul_forward(const Tensor& a, const Tensor& b, Tensor& y);
void mul_backward(const Tensor& dy, const Tensor& a, const Tensor& b, Tensor* da, Tensor* db);
// y = x[..., begin : begin + y.dim(dim), ...]; slice_backward adds dy back into that window of dx.
void slice_forward(const Tensor& x, int dim, int64_t begin, Tensor& y);
void slice_backward(const Tensor& dy, int dim, int64_t begin, Tensor& dx);
// y = x with dimensions d0, d1 swapped; transpose_backward adds dyᵀ into dx.
void transpose_forward(const Tensor& x, int d0, int d1, Tensor& y);
void transpose_backward(const Tensor& dy, int d0, int d1, Tensor& dx);

}  // namespace peft
