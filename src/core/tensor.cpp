#include "core/tensor.h"

#include <cstring>

namespace peft {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor Tensor::zeros(Shape shape, DType dtype) {
  for (int64_t d : shape) PEFT_CHECK(d >= 0, "negative dimension in {}", shape_str(shape));
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.storage_ = make_aligned_storage(dtype_bytes(dtype, t.numel()));
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, Shape shape) {
  Tensor t = zeros(std::move(shape));
  PEFT_CHECK(int64_t(values.size()) == t.numel(), "{} values for shape {}", values.size(),
             shape_str(t.shape_));
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::from_vector_i32(const std::vector<int32_t>& values, Shape shape) {
  Tensor t = zeros(std::move(shape), DType::I32);
  PEFT_CHECK(int64_t(values.size()) == t.numel(), "{} values for shape {}", values.size(),
             shape_str(t.shape_));
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape,
                            DType dtype) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  const size_t bytes = dtype_bytes(dtype, t.numel());
  PEFT_CHECK(byte_offset <= storage->size() && bytes <= storage->size() - byte_offset,
             "view {} at offset {} exceeds storage of {} bytes", shape_str(t.shape_), byte_offset,
             storage->size());
  t.storage_ = std::move(storage);
  t.offset_ = byte_offset;
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int k = i < 0 ? i + n : i;
  PEFT_CHECK(k >= 0 && k < n, "dim {} of a {}-d tensor", i, n);
  return shape_[size_t(k)];
}

Tensor Tensor::view(Shape shape) const {
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      PEFT_CHECK(infer < 0, "two -1 dimensions in view {}", shape_str(shape));
      infer = int(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    PEFT_CHECK(known > 0 && numel() % known == 0, "cannot view {} as {}", describe(),
               shape_str(shape));
    shape[size_t(infer)] = numel() / known;
  }
  PEFT_CHECK(shape_numel(shape) == numel(), "cannot view {} as {}", describe(), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  PEFT_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
             "slice_rows({}, {}) of {}", begin, end, describe());
  Tensor t = *this;
  t.offset_ = offset_ + dtype_bytes(dtype_, begin * row_numel());
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::row(int64_t i) const {
  Tensor t = slice_rows(i, i + 1);
  t.shape_.erase(t.shape_.begin());
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = zeros(shape_, dtype_);
  if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  Tensor out = zeros(shape_, dtype);
  if (dtype_ == DType::F32) {
    convert_from_f32(dtype, static_cast<const float*>(raw()), out.raw(), numel());
  } else if (dtype == DType::F32) {
    convert_to_f32(dtype_, raw(), static_cast<float*>(out.raw()), numel());
  } else {
    Tensor f = to(DType::F32);
    convert_from_f32(dtype, static_cast<const float*>(f.raw()), out.raw(), numel());
  }
  return out;
}

void Tensor::copy_from(const Tensor& other) {
  PEFT_CHECK(other.shape_ == shape_ && other.dtype_ == dtype_, "copy {} into {}", other.describe(),
             describe());
  if (nbytes()) std::memmove(raw(), other.raw(), nbytes());
}

void Tensor::fill(float value) {
  float* p = data<float>();
  for (int64_t i = 0, n = numel(); i < n; ++i) p[i] = value;
}

void Tensor::zero() {
  if (nbytes()) std::memset(raw(), 0, nbytes());
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> v(static_cast<size_t>(numel()));
  if (!v.empty()) convert_to_f32(dtype_, raw(), v.data(), numel());
  return v;
}

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype_)) + shape_str(shape_);
}

void Tensor::check_type(DType wanted) const {
  const bool half = wanted == DType::BF16 && (dtype_ == DType::BF16 || dtype_ == DType::F16);
  PEFT_CHECK(defined(), "access to an undefined tensor");
  PEFT_CHECK(half || dtype_ == wanted, "tensor is {}, accessed as {}", describe(),
             dtype_name(wanted));
}

}  // namespace peft
