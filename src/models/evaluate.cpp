#include "models/evaluate.h"

#include <cmath>

#include "autograd/tape.h"
#include "core/error.h"
#include "models/model.h"

namespace peft {

EvalResult evaluate_records(Model& model, const std::vector<TokenRecord>& records,
                            int64_t batch_size, ModelHooks* hooks) {
  PEFT_CHECK(batch_size > 0, "batch size {}", batch_size);
  NoGradGuard no_grad;
  double sum = 0;
  int64_t count = 0, top1 = 0;
  for (size_t begin = 0; begin < records.size(); begin += size_t(batch_size)) {
    const size_t end = std::min(records.size(), begin + size_t(batch_size));
    const int64_t B = int64_t(end - begin);
    int64_t T = 0;
    bool types = false;
    for (size_t i = begin; i < end; ++i) {
      T = std::max<int64_t>(T, int64_t(records[i].input_ids.size()));
      types |= !records[i].token_type_ids.empty();
    }
    ModelInputs in;
    in.input_ids = Tensor::zeros({B, T}, DType::I32);  // padding id 0, masked
    in.attention_mask = Tensor::zeros({B, T}, DType::I32);
    if (types) in.token_type_ids = Tensor::zeros({B, T}, DType::I32);
    Tensor labels = Tensor::zeros({B, T}, DType::I32);
    int32_t* ids = in.input_ids.data<int32_t>();
    int32_t* mask = in.attention_mask.data<int32_t>();
    int32_t* lab = labels.data<int32_t>();
    for (int64_t b = 0; b < B; ++b) {
      const TokenRecord& r = records[begin + size_t(b)];
      for (int64_t t = 0; t < T; ++t) {
        const bool real = t < int64_t(r.input_ids.size());
        ids[b * T + t] = real ? r.input_ids[size_t(t)] : 0;
        mask[b * T + t] = real ? 1 : 0;
        lab[b * T + t] = real ? r.labels[size_t(t)] : -100;
        if (types && real && !r.token_type_ids.empty())
          in.token_type_ids.data<int32_t>()[b * T + t] = r.token_type_ids[size_t(t)];
      }
    }
    const Var hidden = model.forward(in, {.hooks = hooks});
    CrossEntropyStats stats;
    model.loss(hidden, labels, {}, &stats);
    sum += stats.sum;
    count += stats.count;
    top1 += stats.top1;
  }
  EvalResult r;
  r.tokens = count;
  r.loss = count ? sum / double(count) : 0.0;
  r.ppl = std::exp(r.loss);
  r.token_accuracy = count ? double(top1) / double(count) : 0.0;
  return r;
}

}  // namespace peft
