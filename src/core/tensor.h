// Tensor: a dtype, a shape and a contiguous row-major view into shared Storage. Copying a Tensor
// copies the view, not the data (like torch.Tensor). Views along the first dimension
// (slice_rows, row) and reshapes (view) share storage; everything else copies.
//
// Shape glossary used across ops/ and models/: B batch, T tokens, C hidden, H / Hkv heads,
// D head dim, V vocab, P virtual (prefix) tokens, r LoRA rank, N = B·T flattened rows.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/storage.h"

namespace peft {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3]"

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::I32;
}
template <>
constexpr DType dtype_of<uint16_t>() {
  return DType::BF16;
}  // bf16 or f16: checked loosely

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled heap tensor.
  static Tensor zeros(Shape shape, DType dtype = DType::F32);
  static Tensor empty(Shape shape, DType dtype = DType::F32) {
    return zeros(std::move(shape), dtype);
  }
  static Tensor from_vector(const std::vector<float>& values, Shape shape);
  static Tensor from_vector_i32(const std::vector<int32_t>& values, Shape shape);
  // A view of existing storage (e.g. a mapped file); checks bounds.
  static Tensor from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape,
                             DType dtype);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return dtype_bytes(dtype_, numel()); }
  bool writable() const { return storage_ && storage_->writable(); }
  // Storage::release_pages for bytes [begin, begin + bytes) of this tensor's data (a mapped
  // file's pages leave the resident set; heap tensors are untouched).
  void release_pages(size_t begin, size_t bytes) const {
    if (storage_) storage_->release_pages(offset_ + begin, bytes);
  }

  void* raw() { return static_cast<char*>(storage_->data()) + offset_; }
  const void* raw() const { return static_cast<const char*>(storage_->data()) + offset_; }
  template <typename T>
  T* data() {
    check_type(dtype_of<T>());
    return static_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    check_type(dtype_of<T>());
    return static_cast<const T*>(raw());
  }

  // Same data, new shape (numel must match; one dimension may be -1).
  Tensor view(Shape shape) const;
  // Rows [begin, end) of the first dimension.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Row i of the first dimension, with that dimension dropped.
  Tensor row(int64_t i) const;
  // Number of rows of the first dimension and elements per row.
  int64_t rows() const { return shape_.empty() ? 1 : shape_[0]; }
  int64_t row_numel() const { return shape_.empty() ? 1 : numel() / shape_[0]; }

  Tensor clone() const;
  // Converted copy (f32 <-> anything; same dtype: clone).
  Tensor to(DType dtype) const;
  void copy_from(const Tensor& other);  // same shape and dtype
  void fill(float value);               // f32 only
  void zero();
  std::vector<float> to_vector() const;  // any float dtype, converted to f32

  std::string describe() const;  // "f32[2, 3]"

 private:
  void check_type(DType wanted) const;

  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::F32;
};

}  // namespace peft
