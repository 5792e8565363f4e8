// Step arena: activations of one training step are bump-allocated from large blocks and all
// released together by reset() at the end of the step (no per-tensor malloc/free in the loop).
// Tensors handed out keep their block alive, so a tensor that outlives reset() stays valid
// memory, but its bytes may be reused by the next step: do not keep them across steps.
#pragma once

#include <memory>
#include <vector>

#include "core/tensor.h"

namespace peft {

class Arena {
 public:
  explicit Arena(size_t block_bytes = size_t(64) << 20) : block_bytes_(block_bytes) {}
  // Zero-filled tensor carved from the current block (a new block when it does not fit).
  Tensor zeros(Shape shape, DType dtype = DType::F32);
  // Frees every block but the largest and rewinds it.
  void reset();
  size_t bytes_in_use() const;
  size_t bytes_reserved() const;
  size_t peak_bytes() const { return peak_; }

 private:
  struct Block {
    std::shared_ptr<Storage> storage;
    size_t used = 0;
  };
  size_t block_bytes_;
  std::vector<Block> blocks_;
  size_t peak_ = 0;
};

}  // namespace peft
