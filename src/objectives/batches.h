// What every objective shares: a Batch as model inputs, and evaluation batches in record order.
#pragma once

#include <functional>

#include "models/model.h"
#include "train/batch.h"

namespace peft {

// The batch's model inputs (packed rows keep their positions and segments).
ModelInputs model_inputs(const Batch& batch);

// Calls fn on batches of `batch_size` consecutive examples, in record order.
void for_each_batch_in_order(const BatchBuilder& data, int64_t batch_size,
                             const std::function<void(const Batch&)>& fn);

}  // namespace peft
