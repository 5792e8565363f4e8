// Non-finite values (NaN, ±inf) in a tensor: the loaders count them so that a corrupted weight or
// adapter file is reported by tensor name and count instead of silently poisoning (or, worse,
// being masked inside) a computation.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace peft {

// Count of NaN / ±inf elements of an f32, bf16 or f16 tensor (0 for other dtypes: integers and
// quantised blocks, whose scales are checked by their readers).
int64_t count_non_finite(const Tensor& t);

}  // namespace peft
