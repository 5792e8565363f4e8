// Key/value cache for decoder inference: the rotated keys and the values of every layer for the
// tokens seen so far, so each new token costs one position of work per layer. A forward with a
// cache gives the same logits as the full forward over the whole sequence (tests/models).
#pragma once

#include <utility>
#include <vector>

#include "core/tensor.h"

namespace peft {

class KVCache {
 public:
  // Room for `capacity` positions of `batch` sequences.
  KVCache(int64_t layers, int64_t batch, int64_t capacity, int64_t kv_heads, int64_t head_dim);

  int64_t length() const { return length_; }  // positions cached (committed by advance())
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }

  // Stores layer `layer`'s keys / values k, v [B, T, Hkv, D] for positions length() ...
  // length() + T − 1 and returns the keys / values of all positions 0 ... length() + T − 1,
  // [B, length() + T, Hkv, D] (a view for B = 1, a copy otherwise). Error past the capacity.
  std::pair<Tensor, Tensor> append(int layer, const Tensor& k, const Tensor& v);
  // Key validity mask i32 [B, length() + T] after appending this step's mask [B, T] (or 1s).
  Tensor append_mask(const Tensor& mask, int64_t t);
  // Commits T new positions (call once per forward, after every layer appended).
  void advance(int64_t t);
  void clear() { length_ = 0; }

 private:
  int64_t layers_, batch_, capacity_, kv_heads_, head_dim_;
  int64_t length_ = 0;
  std::vector<Tensor> keys_, values_;  // per layer [B, capacity, Hkv, D]
  Tensor mask_;                        // i32 [B, capacity]
};

}  // namespace peft
