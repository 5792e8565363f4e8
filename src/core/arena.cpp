#include "core/arena.h"

#include <algorithm>
#include <cstring>

namespace peft {

Tensor Arena::zeros(Shape shape, DType dtype) {
  const size_t bytes = dtype_bytes(dtype, shape_numel(shape));
  const size_t aligned = (bytes + 63) / 64 * 64;
  if (blocks_.empty() || blocks_.back().storage->size() - blocks_.back().used < aligned) {
    blocks_.push_back({make_aligned_storage(std::max(block_bytes_, aligned)), 0});
  }
  Block& b = blocks_.back();
  Tensor t = Tensor::from_storage(b.storage, b.used, std::move(shape), dtype);
  b.used += aligned;
  if (bytes) std::memset(t.raw(), 0, bytes);
  peak_ = std::max(peak_, bytes_in_use());
  return t;
}

void Arena::reset() {
  if (blocks_.empty()) return;
  auto largest = std::max_element(
      blocks_.begin(), blocks_.end(),
      [](const Block& a, const Block& b) { return a.storage->size() < b.storage->size(); });
  Block keep = *largest;
  keep.used = 0;
  blocks_.clear();
  blocks_.push_back(keep);
}

size_t Arena::bytes_in_use() const {
  size_t n = 0;
  for (const Block& b : blocks_) n += b.used;
  return n;
}

size_t Arena::bytes_reserved() const {
  size_t n = 0;
  for (const Block& b : blocks_) n += b.storage->size();
  return n;
}

}  // namespace peft
