#include "objectives/batches.h"

#include <algorithm>

namespace peft {

ModelInputs model_inputs(const Batch& b) {
  ModelInputs in;
  in.input_ids = b.input_ids;
  in.attention_mask = b.attention_mask;
  in.token_type_ids = b.token_type_ids;
  if (b.segment_ids.defined()) {  // packed rows: positions restart, attention stays in a record
    in.position_ids = b.positions;
    in.segment_ids = b.segment_ids;
  }
  return in;
}

void for_each_batch_in_order(const BatchBuilder& data, int64_t batch_size,
                             const std::function<void(const Batch&)>& fn) {
  const size_t n = data.num_examples();
  for (size_t begin = 0; begin < n; begin += size_t(batch_size)) {
    std::vector<size_t> indices;
    for (size_t i = begin; i < std::min(n, begin + size_t(batch_size)); ++i) indices.push_back(i);
    fn(data.make_batch(indices));
  }
}

}  // namespace peft
