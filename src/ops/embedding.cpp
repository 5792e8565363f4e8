#include "ops/embedding.h"

namespace peft {

void embedding_forward(const Tensor& table, const Tensor& ids, Tensor& y) {
  const int64_t V = table.dim(0), C = table.dim(1), n = ids.numel();
  const int32_t* pid = ids.data<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    if (pid[i] < 0 || pid[i] >= V)
      fail(
          "embedding: token id {} at position {} of ids {} is outside the table {} (ids must be "
          "in [0, {}))",
          pid[i], i, shape_str(ids.shape()), table.describe(), V);
  const char* base = static_cast<const char*>(table.raw());
  const size_t row_bytes = dtype_bytes(table.dtype(), C);
  float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (n * C > (1 << 15))
  for (int64_t i = 0; i < n; ++i)
    convert_to_f32(table.dtype(), base + size_t(pid[i]) * row_bytes, py + i * C, C);
}

void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable) {
  const int64_t C = dtable.dim(1), n = ids.numel();
  const int32_t* pid = ids.data<int32_t>();
  const float* g = dy.data<float>();
  float* d = dtable.data<float>();
  // Serial over rows: repeated ids add into the same table row, so rows cannot race; the loop
  // is N·C additions, negligible next to the model around it.
  for (int64_t i = 0; i < n; ++i) {
    float* row = d + int64_t(pid[i]) * C;
    const float* gi = g + i * C;
    for (int64_t j = 0; j < C; ++j) row[j] += gi[j];
  }
}

Var embedding(const Var& table, const Tensor& ids) {
  const Tensor& w = table->value;
  PEFT_CHECK(w.ndim() == 2, "embedding table {} ({}) must be [V, C]", w.describe(), table->name);
  PEFT_CHECK(ids.dtype() == DType::I32, "embedding ids must be i32, got {}", ids.describe());
  Shape out = ids.shape();
  out.push_back(w.dim(1));
  Tensor y = Tensor::zeros(out);
  embedding_forward(w, ids, y);
  const bool grad = needs_grad({&table});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, table, ids]() {
    if (!result->grad.defined()) return;
    embedding_backward(result->grad, ids, table->grad_buffer());
  });
  return result;
}

}  // namespace peft
