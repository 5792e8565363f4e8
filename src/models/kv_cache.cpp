#include "models/kv_cache.h"

#include <cstring>

#include "core/error.h"

namespace peft {

KVCache::KVCache(int64_t layers, int64_t batch, int64_t capacity, int64_t kv_heads,
                 int64_t head_dim)
    : layers_(layers),
      batch_(batch),
      capacity_(capacity),
      kv_heads_(kv_heads),
      head_dim_(head_dim) {
  for (int64_t l = 0; l < layers; ++l) {
    keys_.push_back(Tensor::zeros({batch, capacity, kv_heads, head_dim}));
    values_.push_back(Tensor::zeros({batch, capacity, kv_heads, head_dim}));
  }
  mask_ = Tensor::zeros({batch, capacity}, DType::I32);
}

std::pair<Tensor, Tensor> KVCache::append(int layer, const Tensor& k, const Tensor& v) {
  PEFT_CHECK(layer >= 0 && layer < layers_, "KV cache layer {} of {}", layer, layers_);
  PEFT_CHECK(k.ndim() == 4 && k.dim(0) == batch_ && k.dim(2) == kv_heads_ &&
                 k.dim(3) == head_dim_ && k.shape() == v.shape(),
             "KV cache [{}, _, {}, {}] given k {} v {}", batch_, kv_heads_, head_dim_, k.describe(),
             v.describe());
  const int64_t t = k.dim(1), total = length_ + t;
  if (total > capacity_) fail("KV cache: {} positions exceed its capacity of {}", total, capacity_);
  const size_t row = size_t(kv_heads_ * head_dim_) * sizeof(float);
  Tensor& K = keys_[size_t(layer)];
  Tensor& V = values_[size_t(layer)];
  for (int64_t b = 0; b < batch_; ++b) {
    std::memcpy(K.data<float>() + (b * capacity_ + length_) * kv_heads_ * head_dim_,
                k.data<float>() + b * t * kv_heads_ * head_dim_, row * size_t(t));
    std::memcpy(V.data<float>() + (b * capacity_ + length_) * kv_heads_ * head_dim_,
                v.data<float>() + b * t * kv_heads_ * head_dim_, row * size_t(t));
  }
  if (batch_ == 1)
    return {K.view({capacity_, kv_heads_, head_dim_})
                .slice_rows(0, total)
                .view({1, total, kv_heads_, head_dim_}),
            V.view({capacity_, kv_heads_, head_dim_})
                .slice_rows(0, total)
                .view({1, total, kv_heads_, head_dim_})};
  Tensor ko = Tensor::zeros({batch_, total, kv_heads_, head_dim_});
  Tensor vo = Tensor::zeros({batch_, total, kv_heads_, head_dim_});
  for (int64_t b = 0; b < batch_; ++b) {
    std::memcpy(ko.data<float>() + b * total * kv_heads_ * head_dim_,
                K.data<float>() + b * capacity_ * kv_heads_ * head_dim_, row * size_t(total));
    std::memcpy(vo.data<float>() + b * total * kv_heads_ * head_dim_,
                V.data<float>() + b * capacity_ * kv_heads_ * head_dim_, row * size_t(total));
  }
  return {ko, vo};
}

Tensor KVCache::append_mask(const Tensor& mask, int64_t t) {
  const int64_t total = length_ + t;
  if (total > capacity_) fail("KV cache: {} positions exceed its capacity of {}", total, capacity_);
  int32_t* m = mask_.data<int32_t>();
  for (int64_t b = 0; b < batch_; ++b)
    for (int64_t i = 0; i < t; ++i)
      m[b * capacity_ + length_ + i] = mask.defined() ? mask.data<int32_t>()[b * t + i] : 1;
  Tensor out = Tensor::zeros({batch_, total}, DType::I32);
  for (int64_t b = 0; b < batch_; ++b)
    std::memcpy(out.data<int32_t>() + b * total, m + b * capacity_, size_t(total) * 4);
  return out;
}

void KVCache::advance(int64_t t) {
  PEFT_CHECK(length_ + t <= capacity_, "KV cache advance past capacity");
  length_ += t;
}

}  // namespace peft
