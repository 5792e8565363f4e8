#include "ops/elementwise.h"

#include <algorithm>

namespace peft {
namespace {

// Loops this short are not worth waking the thread pool for.
constexpr int64_t kParallelMin = 1 << 15;

int normalize_dim(int dim, int ndim) {
  const int d = dim < 0 ? dim + ndim : dim;
  PEFT_CHECK(d >= 0 && d < ndim, "dim {} of a {}-d tensor", dim, ndim);
  return d;
}

int64_t prod(const Shape& s, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i) n *= s[i];
  return n;
}

// Copies (or, accumulating, adds) a window along one dimension between a tensor viewed as
// [outer, src_len, inner] and one viewed as [outer, dst_len, inner]: rows src_begin.. of the
// source go to rows dst_begin.. of the destination, count rows per outer index.
void copy_window(const float* src, int64_t src_len, int64_t src_begin, float* dst, int64_t dst_len,
                 int64_t dst_begin, int64_t outer, int64_t count, int64_t inner, bool accumulate) {
  const int64_t block = count * inner;
#pragma omp parallel for schedule(static) if (outer * block > kParallelMin)
  for (int64_t o = 0; o < outer; ++o) {
    const float* s = src + (o * src_len + src_begin) * inner;
    float* d = dst + (o * dst_len + dst_begin) * inner;
    if (accumulate) {
      for (int64_t k = 0; k < block; ++k) d[k] += s[k];
    } else {
      std::copy(s, s + block, d);
    }
  }
}

// dst = src with dimensions d0 < d1 swapped (src viewed as [A, n0, M, n1, I]).
void swap_dims(const float* src, const Shape& shape, int d0, int d1, float* dst, bool accumulate) {
  const int64_t A = prod(shape, 0, size_t(d0)), n0 = shape[size_t(d0)];
  const int64_t M = prod(shape, size_t(d0) + 1, size_t(d1)), n1 = shape[size_t(d1)];
  const int64_t I = prod(shape, size_t(d1) + 1, shape.size());
#pragma omp parallel for collapse(2) schedule(static) if (A * n0 * M * n1 * I > kParallelMin)
  for (int64_t a = 0; a < A; ++a)
    for (int64_t j1 = 0; j1 < n1; ++j1)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t j0 = 0; j0 < n0; ++j0) {
          const float* s = src + (((a * n0 + j0) * M + m) * n1 + j1) * I;
          float* d = dst + (((a * n1 + j1) * M + m) * n0 + j0) * I;
          for (int64_t i = 0; i < I; ++i) d[i] = accumulate ? d[i] + s[i] : s[i];
        }
}

void accumulate_into(Tensor& dst, const Tensor& src) {
  float* d = dst.data<float>();
  const float* s = src.data<float>();
  const int64_t n = dst.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) d[i] += s[i];
}

Tensor* grad_of(const Var& v) {
  return v && v->requires_grad ? &v->grad_buffer() : nullptr;
}

}  // namespace

bool broadcasts_over(const Shape& a, const Shape& b) {
  if (b == a) return true;
  size_t lead = 0;
  while (lead < b.size() && b[lead] == 1) ++lead;
  const size_t rest = b.size() - lead;
  return rest <= a.size() && std::equal(b.begin() + long(lead), b.end(), a.end() - long(rest));
}

void add_forward(const Tensor& a, const Tensor& b, Tensor& y) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* py = y.data<float>();
  const int64_t inner = b.numel(), outer = inner ? a.numel() / inner : 0;
#pragma omp parallel for schedule(static) if (a.numel() > kParallelMin)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < inner; ++k) py[o * inner + k] = pa[o * inner + k] + pb[k];
}

void add_backward(const Tensor& dy, Tensor* da, Tensor* db) {
  if (da) accumulate_into(*da, dy);
  if (db) {  // db[k] += Σ_o dy[o, k]
    const float* g = dy.data<float>();
    float* pb = db->data<float>();
    const int64_t inner = db->numel(), outer = inner ? dy.numel() / inner : 0;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < inner; ++k) pb[k] += g[o * inner + k];
  }
}

void mul_forward(const Tensor& a, const Tensor& b, Tensor& y) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* py = y.data<float>();
  const int64_t inner = b.numel(), outer = inner ? a.numel() / inner : 0;
#pragma omp parallel for schedule(static) if (a.numel() > kParallelMin)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < inner; ++k) py[o * inner + k] = pa[o * inner + k] * pb[k];
}

void mul_backward(const Tensor& dy, const Tensor& a, const Tensor& b, Tensor* da, Tensor* db) {
  const float* g = dy.data<float>();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const int64_t inner = b.numel(), outer = inner ? a.numel() / inner : 0;
  if (da) {  // da = dy ⊙ b
    float* d = da->data<float>();
#pragma omp parallel for schedule(static) if (a.numel() > kParallelMin)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < inner; ++k) d[o * inner + k] += g[o * inner + k] * pb[k];
  }
  if (db) {  // db[k] += Σ_o dy[o, k] · a[o, k]
    float* d = db->data<float>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < inner; ++k) d[k] += g[o * inner + k] * pa[o * inner + k];
  }
}

void slice_forward(const Tensor& x, int dim, int64_t begin, Tensor& y) {
  const Shape& s = x.shape();
  const int d = normalize_dim(dim, x.ndim());
  const int64_t outer = prod(s, 0, size_t(d)), inner = prod(s, size_t(d) + 1, s.size());
  const int64_t count = y.dim(d);
  copy_window(x.data<float>(), s[size_t(d)], begin, y.data<float>(), count, 0, outer, count, inner,
              false);
}

void slice_backward(const Tensor& dy, int dim, int64_t begin, Tensor& dx) {
  const Shape& s = dx.shape();
  const int d = normalize_dim(dim, dx.ndim());
  const int64_t outer = prod(s, 0, size_t(d)), inner = prod(s, size_t(d) + 1, s.size());
  const int64_t count = dy.dim(d);
  copy_window(dy.data<float>(), count, 0, dx.data<float>(), s[size_t(d)], begin, outer, count,
              inner, true);
}

void transpose_forward(const Tensor& x, int d0, int d1, Tensor& y) {
  int a = normalize_dim(d0, x.ndim()), b = normalize_dim(d1, x.ndim());
  if (a > b) std::swap(a, b);
  swap_dims(x.data<float>(), x.shape(), a, b, y.data<float>(), false);
}

void transpose_backward(const Tensor& dy, int d0, int d1, Tensor& dx) {
  int a = normalize_dim(d0, dy.ndim()), b = normalize_dim(d1, dy.ndim());
  if (a > b) std::swap(a, b);
  swap_dims(dy.data<float>(), dy.shape(), a, b, dx.data<float>(), true);
}

Var add(const Var& a, const Var& b) {
  PEFT_CHECK(broadcasts_over(a->value.shape(), b->value.shape()), "add: {} + {}",
             a->value.describe(), b->value.describe());
  Tensor y = Tensor::zeros(a->value.shape());
  add_forward(a->value, b->value, y);
  const bool grad = needs_grad({&a, &b});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, a, b]() {
    if (!result->grad.defined()) return;
    add_backward(result->grad, grad_of(a), grad_of(b));
  });
  return result;
}

Var mul(const Var& a, const Var& b) {
  PEFT_CHECK(broadcasts_over(a->value.shape(), b->value.shape()), "mul: {} ⊙ {}",
             a->value.describe(), b->value.describe());
  Tensor y = Tensor::zeros(a->value.shape());
  mul_forward(a->value, b->value, y);
  const bool grad = needs_grad({&a, &b});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, a, b]() {
    if (!result->grad.defined()) return;
    mul_backward(result->grad, a->value, b->value, grad_of(a), grad_of(b));
  });
  return result;
}

Var scale(const Var& x, float s) {
  Tensor y = Tensor::zeros(x->value.shape());
  const float* px = x->value.data<float>();
  float* py = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) py[i] = s * px[i];
  const bool grad = needs_grad({&x});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, x, s]() {  // dx += s · dy
    if (!result->grad.defined()) return;
    const float* g = result->grad.data<float>();
    float* d = x->grad_buffer().data<float>();
    const int64_t m = x->value.numel();
#pragma omp parallel for schedule(static) if (m > kParallelMin)
    for (int64_t i = 0; i < m; ++i) d[i] += s * g[i];
  });
  return result;
}

Var concat(const std::vector<Var>& xs, int dim) {
  PEFT_CHECK(!xs.empty(), "concat of nothing");
  const Shape& first = xs[0]->value.shape();
  const int d = normalize_dim(dim, int(first.size()));
  Shape out = first;
  out[size_t(d)] = 0;
  for (const Var& x : xs) {
    Shape s = x->value.shape();
    PEFT_CHECK(s.size() == first.size(), "concat: {} with {}", x->value.describe(),
               xs[0]->value.describe());
    out[size_t(d)] += s[size_t(d)];
    s[size_t(d)] = first[size_t(d)];
    PEFT_CHECK(s == first, "concat along {}: {} with {}", d, x->value.describe(),
               xs[0]->value.describe());
  }
  Tensor y = Tensor::zeros(out);
  const int64_t outer = prod(out, 0, size_t(d)), inner = prod(out, size_t(d) + 1, out.size());
  std::vector<int64_t> offsets;
  int64_t at = 0;
  bool grad = false;
  for (const Var& x : xs) {
    const int64_t len = x->value.dim(d);
    copy_window(x->value.data<float>(), len, 0, y.data<float>(), out[size_t(d)], at, outer, len,
                inner, false);
    offsets.push_back(at);
    at += len;
    grad = needs_grad({&x}) || grad;  // every input noted by a watching tape
  }
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, xs, offsets, d]() {
    if (!result->grad.defined()) return;
    for (size_t i = 0; i < xs.size(); ++i)
      if (xs[i]->requires_grad) {
        Tensor& dx = xs[i]->grad_buffer();
        const Shape& s = result->grad.shape();
        const int64_t outer = prod(s, 0, size_t(d)), inner = prod(s, size_t(d) + 1, s.size());
        copy_window(result->grad.data<float>(), s[size_t(d)], offsets[i], dx.data<float>(),
                    dx.dim(d), 0, outer, dx.dim(d), inner, true);
      }
  });
  return result;
}

Var slice(const Var& x, int dim, int64_t begin, int64_t end) {
  const int d = normalize_dim(dim, x->value.ndim());
  PEFT_CHECK(0 <= begin && begin <= end && end <= x->value.dim(d), "slice [{}, {}) of dim {} of {}",
             begin, end, d, x->value.describe());
  Shape out = x->value.shape();
  out[size_t(d)] = end - begin;
  Tensor y = Tensor::zeros(out);
  slice_forward(x->value, d, begin, y);
  const bool grad = needs_grad({&x});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, x, d, begin]() {
    if (!result->grad.defined()) return;
    slice_backward(result->grad, d, begin, x->grad_buffer());
  });
  return result;
}

Var reshape(const Var& x, Shape shape) {
  const bool grad = needs_grad({&x});
  Var result = make_output(x->value.view(std::move(shape)), grad);
  if (!grad) return result;
  active_tape()->record([result, x]() {
    if (!result->grad.defined()) return;
    accumulate_into(x->grad_buffer(), result->grad);
  });
  return result;
}

Var transpose(const Var& x, int d0, int d1) {
  const int a = normalize_dim(d0, x->value.ndim()), b = normalize_dim(d1, x->value.ndim());
  Shape out = x->value.shape();
  std::swap(out[size_t(a)], out[size_t(b)]);
  Tensor y = Tensor::zeros(out);
  transpose_forward(x->value, a, b, y);
  const bool grad = needs_grad({&x});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, x, a, b]() {
    if (!result->grad.defined()) return;
    transpose_backward(result->grad, a, b, x->grad_buffer());
  });
  return result;
}

namespace {

// y = w · Σ_i x_i, accumulated in f64 so that long sums keep their precision.
Var weighted_sum(const Var& x, double w) {
  const float* px = x->value.data<float>();
  double acc = 0;
  for (int64_t i = 0, n = x->value.numel(); i < n; ++i) acc += px[i];
  Tensor y = Tensor::zeros({});
  y.data<float>()[0] = float(w * acc);
  const bool grad = needs_grad({&x});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, x, w]() {  // dx_i += w · dy
    if (!result->grad.defined()) return;
    const float g = float(w * result->grad.data<float>()[0]);
    float* d = x->grad_buffer().data<float>();
    for (int64_t i = 0, n = x->value.numel(); i < n; ++i) d[i] += g;
  });
  return result;
}

}  // namespace

Var sum(const Var& x) {
  return weighted_sum(x, 1.0);
}

Var mean(const Var& x) {
  PEFT_CHECK(x->value.numel() > 0, "mean of an empty tensor {}", x->value.describe());
  return weighted_sum(x, 1.0 / double(x->value.numel()));
}

}  // namespace peft
