// Embedding lookup: y[..., C] = table[ids[...], :] for a table [V, C] and i32 ids of any shape.
// A frozen table may be stored f32, bf16, f16 (or q8_0 / q4_0 when C is a multiple of 32); rows
// are converted to f32 as they are gathered. A trainable table (prompt tuning's virtual tokens)
// gets its gradient by scatter-add: dtable[id] += dy[row].
#pragma once

#include "autograd/tape.h"

namespace peft {

// Throws Error naming the id and its position when an id is outside [0, V).
Var embedding(const Var& table, const Tensor& ids);

// Raw kernels. embedding_forward checks the ids; embedding_backward accumulates (+=) into
// dtable [V, C] (f32) and assumes checked ids.
void embedding_forward(const Tensor& table, const Tensor& ids, Tensor& y);
void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable);

}  // namespace peft
