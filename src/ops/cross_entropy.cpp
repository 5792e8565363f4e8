#include "ops/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/gemm.h"
#include "ops/softmax.h"

namespace peft {
namespace {

// Checks every target and returns the indices of the rows that count (t ≠ ignore_index).
std::vector<int64_t> active_rows(const Tensor& targets, int64_t n, int64_t vocab,
                                 int32_t ignore_index) {
  PEFT_CHECK(targets.dtype() == DType::I32 && targets.numel() == n,
             "cross_entropy: targets must be i32 with {} elements, got {}", n, targets.describe());
  const int32_t* t = targets.data<int32_t>();
  std::vector<int64_t> rows;
  rows.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    if (t[i] == ignore_index) continue;
    if (t[i] < 0 || t[i] >= vocab)
      fail("cross_entropy: target {} at row {} is outside the vocabulary [0, {}) (ignore_index {})",
           t[i], i, vocab, ignore_index);
    rows.push_back(i);
  }
  return rows;
}

// One row of logits z [V] with target t: returns ℓ = logsumexp(z) − z[t] and sets top1 when t is
// argmax z; when want_grad, overwrites z with grad_scale · (softmax(z) − onehot(t)).
double row_loss(float* z, int64_t vocab, int32_t t, float grad_scale, bool want_grad, bool& top1) {
  const float zt = z[t];
  const float m = row_max(z, vocab);
  top1 = zt == m && std::find(z, z + t, m) == z + t;
  float* e = want_grad ? z : nullptr;
  double s;
  if (e) {
    s = exp_shifted_sum(z, vocab, m, e);
  } else {  // loss only: exponentials to a small scratch, z untouched
    float scratch[256];
    s = 0;
    for (int64_t j = 0; j < vocab; j += 256) {
      const int64_t n = std::min<int64_t>(256, vocab - j);
      s += exp_shifted_sum(z + j, n, m, scratch);
    }
  }
  if (e) {
    const float k = float(grad_scale / s);
    for (int64_t j = 0; j < vocab; ++j) e[j] *= k;
    e[t] -= grad_scale;
  }
  return double(m) + std::log(s) - double(zt);
}

}  // namespace

CrossEntropyStats cross_entropy_forward(const Tensor& hidden, const Tensor& weight,
                                        const Tensor& targets, const CrossEntropyOptions& opts,
                                        float grad_scale, Tensor* dh, Tensor* dw) {
  PEFT_CHECK(weight.ndim() == 2 && hidden.dtype() == DType::F32 && hidden.dim(-1) == weight.dim(1),
             "cross_entropy: hidden {} with weight {}", hidden.describe(), weight.describe());
  PEFT_CHECK(!dw || (weight.dtype() == DType::F32 && dw->shape() == weight.shape()),
             "cross_entropy: a weight gradient needs an f32 weight, got {}", weight.describe());
  PEFT_CHECK(opts.chunk_rows > 0, "cross_entropy: chunk_rows {}", opts.chunk_rows);
  const int64_t C = weight.dim(1), V = weight.dim(0), N = hidden.numel() / C;
  const std::vector<int64_t> rows = active_rows(targets, N, V, opts.ignore_index);
  CrossEntropyStats stats;
  stats.count = int64_t(rows.size());
  if (rows.empty()) return stats;

  const bool want_grad = dh || dw;
  const int32_t* t = targets.data<int32_t>();
  const float* ph = hidden.data<float>();
  const int64_t chunk = std::min<int64_t>(opts.chunk_rows, int64_t(rows.size()));
  // Chunk buffers: gathered hidden rows, logits (then dlogits in place), dh rows, row losses.
  std::vector<float> hc(size_t(chunk * C)), z(size_t(chunk * V)), dhc(dh ? size_t(chunk * C) : 0);
  std::vector<double> loss(static_cast<size_t>(chunk));
  std::vector<char> top1(static_cast<size_t>(chunk));
  for (int64_t r0 = 0; r0 < int64_t(rows.size()); r0 += chunk) {
    const int64_t n = std::min<int64_t>(chunk, int64_t(rows.size()) - r0);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(&hc[size_t(i * C)], ph + rows[size_t(r0 + i)] * C, size_t(C) * 4);
    matmul_x_wt(hc.data(), n, weight, z.data(), 0.0f);  // z = hc · Wᵀ
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      bool hit = false;
      loss[size_t(i)] =
          row_loss(&z[size_t(i * V)], V, t[rows[size_t(r0 + i)]], grad_scale, want_grad, hit);
      top1[size_t(i)] = hit;
    }
    for (int64_t i = 0; i < n; ++i) {  // in row order: deterministic
      stats.sum += loss[size_t(i)];
      stats.top1 += top1[size_t(i)];
    }
    if (dh) {  // dh rows += dz · W
      matmul_dy_w(z.data(), n, weight, dhc.data(), 0.0f);
      float* pd = dh->data<float>();
      for (int64_t i = 0; i < n; ++i) {
        float* dst = pd + rows[size_t(r0 + i)] * C;
        const float* src = &dhc[size_t(i * C)];
        for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
      }
    }
    if (dw)  // dW[V, C] += dzᵀ · hc
      gemm_f32(true, false, V, C, n, 1.0f, z.data(), V, hc.data(), C, 1.0f, dw->data<float>(), C);
  }
  return stats;
}

CrossEntropyStats cross_entropy_logits_forward(const Tensor& logits, const Tensor& targets,
                                               const CrossEntropyOptions& opts, float grad_scale,
                                               Tensor* dlogits) {
  PEFT_CHECK(logits.dtype() == DType::F32 && logits.ndim() >= 1,
             "cross_entropy: f32 logits expected, got {}", logits.describe());
  const int64_t V = logits.dim(-1), N = V ? logits.numel() / V : 0;
  const std::vector<int64_t> rows = active_rows(targets, N, V, opts.ignore_index);
  CrossEntropyStats stats;
  stats.count = int64_t(rows.size());
  const int32_t* t = targets.data<int32_t>();
  const float* pz = logits.data<float>();
  float* pd = dlogits ? dlogits->data<float>() : nullptr;
  std::vector<double> loss(rows.size());
  std::vector<char> top1(rows.size());
#pragma omp parallel
  {
    std::vector<float> z(static_cast<size_t>(V));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < int64_t(rows.size()); ++i) {
      const int64_t r = rows[size_t(i)];
      std::memcpy(z.data(), pz + r * V, size_t(V) * 4);
      bool hit = false;
      loss[size_t(i)] = row_loss(z.data(), V, t[r], grad_scale, pd != nullptr, hit);
      top1[size_t(i)] = hit;
      if (pd)
        for (int64_t j = 0; j < V; ++j) pd[r * V + j] += z[size_t(j)];
    }
  }
  for (double l : loss) stats.sum += l;
  for (char h : top1) stats.top1 += h;
  return stats;
}

void cross_entropy_backward(float upstream, const Tensor& stored, Tensor& grad) {
  const float* s = stored.data<float>();
  float* g = grad.data<float>();
  const int64_t n = stored.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) g[i] += upstream * s[i];
}

namespace {

// The loss divisor: opts.normaliser when given, else the count (1 when nothing counts, so the
// loss and the gradients are 0, not NaN).
double normaliser_for(const CrossEntropyOptions& opts, int64_t count) {
  PEFT_CHECK(opts.normaliser >= 0, "cross_entropy: normaliser {}", opts.normaliser);
  if (opts.normaliser > 0) return opts.normaliser;
  return count > 0 ? double(count) : 1.0;
}

int64_t count_active(const Tensor& targets, int32_t ignore_index) {
  const int32_t* t = targets.data<int32_t>();
  int64_t n = 0;
  for (int64_t i = 0; i < targets.numel(); ++i) n += t[i] != ignore_index;
  return n;
}

Var scalar_output(double value, bool grad) {
  Tensor loss = Tensor::zeros({});
  loss.data<float>()[0] = float(value);
  return make_output(std::move(loss), grad);
}

}  // namespace

Var cross_entropy(const Var& hidden, const Var& weight, const Tensor& targets,
                  const CrossEntropyOptions& opts, CrossEntropyStats* stats) {
  PEFT_CHECK(targets.dtype() == DType::I32, "cross_entropy: i32 targets expected, got {}",
             targets.describe());
  const double norm = normaliser_for(opts, count_active(targets, opts.ignore_index));
  const bool grad = needs_grad({&hidden, &weight});
  Tensor dh, dw;  // d(loss)/dh and d(loss)/dW for an upstream gradient of 1
  if (grad && hidden->requires_grad) dh = Tensor::zeros(hidden->value.shape());
  if (grad && weight->requires_grad) dw = Tensor::zeros(weight->value.shape());
  const CrossEntropyStats s =
      cross_entropy_forward(hidden->value, weight->value, targets, opts, float(1.0 / norm),
                            dh.defined() ? &dh : nullptr, dw.defined() ? &dw : nullptr);
  if (stats) *stats = s;
  Var result = scalar_output(s.sum / norm, grad);
  if (!grad) return result;
  active_tape()->record([result, hidden, weight, dh, dw]() {
    if (!result->grad.defined()) return;
    const float g = result->grad.data<float>()[0];
    if (dh.defined()) cross_entropy_backward(g, dh, hidden->grad_buffer());
    if (dw.defined()) cross_entropy_backward(g, dw, weight->grad_buffer());
  });
  return result;
}

Var cross_entropy_from_logits(const Var& logits, const Tensor& targets,
                              const CrossEntropyOptions& opts, CrossEntropyStats* stats) {
  PEFT_CHECK(targets.dtype() == DType::I32, "cross_entropy: i32 targets expected, got {}",
             targets.describe());
  const double norm = normaliser_for(opts, count_active(targets, opts.ignore_index));
  const CrossEntropyStats s =
      cross_entropy_logits_forward(logits->value, targets, opts, 0, nullptr);
  if (stats) *stats = s;
  const bool grad = needs_grad({&logits});
  Var result = scalar_output(s.sum / norm, grad);
  if (!grad) return result;
  // Not fused: the logits exist anyway, so the gradient is formed when it is asked for.
  active_tape()->record([result, logits, targets, opts, norm]() {
    if (!result->grad.defined()) return;
    const float g = result->grad.data<float>()[0];
    cross_entropy_logits_forward(logits->value, targets, opts, float(g / norm),
                                 &logits->grad_buffer());
  });
  return result;
}

}  // namespace peft
