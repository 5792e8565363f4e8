#include "ops/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace peft {
namespace {

// Columns per task when reducing weight gradients over rows: each task owns a disjoint column
// block, so the sums need no atomics and do not depend on the thread count.
constexpr int64_t kColumnBlock = 64;
// Work (elements) below which a loop is not worth waking the thread pool for.
constexpr int64_t kParallelMin = 1 << 14;

// dw[j] += Σ_i dy[i, j] · x̂[i, j] (and db[j] += Σ_i dy[i, j]), x̂ = (x − mean) · rstd.
void reduce_weight_grads(const float* dy, const float* x, const float* mean, const float* rstd,
                         int64_t n, int64_t C, float* dw, float* db) {
  const int64_t blocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (n * C > kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t j0 = blk * kColumnBlock, j1 = std::min(C, j0 + kColumnBlock);
    float accw[kColumnBlock] = {}, accb[kColumnBlock] = {};
    for (int64_t i = 0; i < n; ++i) {
      const float* g = dy + i * C;
      const float* xi = x + i * C;
      const float mu = mean ? mean[i] : 0.0f, r = rstd[i];
      for (int64_t j = j0; j < j1; ++j) {
        accw[j - j0] += g[j] * (xi[j] - mu) * r;
        accb[j - j0] += g[j];
      }
    }
    for (int64_t j = j0; j < j1; ++j) {
      if (dw) dw[j] += accw[j - j0];
      if (db) db[j] += accb[j - j0];
    }
  }
}

void check_norm_inputs(const char* op, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  PEFT_CHECK(x.ndim() >= 1 && weight.ndim() == 1 && weight.dim(0) == x.dim(-1),
             "{}: x {} weight {}", op, x.describe(), weight.describe());
  PEFT_CHECK(!bias || (bias->ndim() == 1 && bias->dim(0) == x.dim(-1)), "{}: x {} bias {}", op,
             x.describe(), bias->describe());
}

}  // namespace

void rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& y, Tensor& rstd) {
  const int64_t C = x.dim(-1), n = x.numel() / C;
  const std::vector<float> w = weight.to_vector();
  const float* px = x.data<float>();
  float* py = y.data<float>();
  float* pr = rstd.data<float>();
#pragma omp parallel for schedule(static) if (n * C > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = px + i * C;
    double ss = 0;
    for (int64_t j = 0; j < C; ++j) ss += double(xi[j]) * xi[j];
    const float r = 1.0f / std::sqrt(float(ss / double(C)) + eps);
    pr[i] = r;
    float* yi = py + i * C;
    for (int64_t j = 0; j < C; ++j) yi[j] = xi[j] * r * w[size_t(j)];
  }
}

void rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                       Tensor* dx, Tensor* dweight) {
  const int64_t C = x.dim(-1), n = x.numel() / C;
  const float* g = dy.data<float>();
  const float* px = x.data<float>();
  const float* pr = rstd.data<float>();
  if (dx) {
    const std::vector<float> w = weight.to_vector();
    float* pd = dx->data<float>();
#pragma omp parallel for schedule(static) if (n * C > kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      const float* gi = g + i * C;
      const float* xi = px + i * C;
      const float r = pr[i];
      double dot = 0;  // Σ_j g_j · x̂_j
      for (int64_t j = 0; j < C; ++j) dot += double(gi[j]) * w[size_t(j)] * xi[j] * r;
      const float m = float(dot / double(C));
      float* di = pd + i * C;
      for (int64_t j = 0; j < C; ++j) di[j] += r * (gi[j] * w[size_t(j)] - xi[j] * r * m);
    }
  }
  if (dweight) reduce_weight_grads(g, px, nullptr, pr, n, C, dweight->data<float>(), nullptr);
}

void layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, float eps,
                        Tensor& y, Tensor& mean, Tensor& rstd) {
  const int64_t C = x.dim(-1), n = x.numel() / C;
  const std::vector<float> w = weight.to_vector();
  const std::vector<float> b = bias ? bias->to_vector() : std::vector<float>(size_t(C), 0.0f);
  const float* px = x.data<float>();
  float* py = y.data<float>();
  float* pm = mean.data<float>();
  float* pr = rstd.data<float>();
#pragma omp parallel for schedule(static) if (n * C > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = px + i * C;
    double s = 0;
    for (int64_t j = 0; j < C; ++j) s += xi[j];
    const double mu = s / double(C);
    double ss = 0;  // two passes: Σ(x − μ)² does not cancel like Σx² − Cμ²
    for (int64_t j = 0; j < C; ++j) ss += (xi[j] - mu) * (xi[j] - mu);
    const float r = 1.0f / std::sqrt(float(ss / double(C)) + eps);
    pm[i] = float(mu);
    pr[i] = r;
    float* yi = py + i * C;
    for (int64_t j = 0; j < C; ++j) yi[j] = (xi[j] - pm[i]) * r * w[size_t(j)] + b[size_t(j)];
  }
}

void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& mean, const Tensor& rstd, Tensor* dx, Tensor* dweight,
                         Tensor* dbias) {
  const int64_t C = x.dim(-1), n = x.numel() / C;
  const float* g = dy.data<float>();
  const float* px = x.data<float>();
  const float* pm = mean.data<float>();
  const float* pr = rstd.data<float>();
  if (dx) {
    const std::vector<float> w = weight.to_vector();
    float* pd = dx->data<float>();
#pragma omp parallel for schedule(static) if (n * C > kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      const float* gi = g + i * C;
      const float* xi = px + i * C;
      const float mu = pm[i], r = pr[i];
      double sg = 0, sgx = 0;  // Σ g, Σ g ⊙ x̂
      for (int64_t j = 0; j < C; ++j) {
        const double gw = double(gi[j]) * w[size_t(j)];
        sg += gw;
        sgx += gw * (xi[j] - mu) * r;
      }
      const float mg = float(sg / double(C)), mgx = float(sgx / double(C));
      float* di = pd + i * C;
      for (int64_t j = 0; j < C; ++j)
        di[j] += r * (gi[j] * w[size_t(j)] - mg - (xi[j] - mu) * r * mgx);
    }
  }
  if (dweight || dbias)
    reduce_weight_grads(g, px, pm, pr, n, C, dweight ? dweight->data<float>() : nullptr,
                        dbias ? dbias->data<float>() : nullptr);
}

Var rms_norm(const Var& x, const Var& weight, float eps) {
  check_norm_inputs("rms_norm", x->value, weight->value, nullptr);
  const int64_t n = x->value.numel() / x->value.dim(-1);
  Tensor y = Tensor::zeros(x->value.shape());
  Tensor rstd = Tensor::zeros({n});
  rms_norm_forward(x->value, weight->value, eps, y, rstd);
  const bool grad = needs_grad({&x, &weight});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, x, weight, rstd]() {
    if (!result->grad.defined()) return;
    rms_norm_backward(result->grad, x->value, weight->value, rstd,
                      x->requires_grad ? &x->grad_buffer() : nullptr,
                      weight->requires_grad ? &weight->grad_buffer() : nullptr);
  });
  return result;
}

Var layer_norm(const Var& x, const Var& weight, const Var& bias, float eps) {
  check_norm_inputs("layer_norm", x->value, weight->value, bias ? &bias->value : nullptr);
  const int64_t n = x->value.numel() / x->value.dim(-1);
  Tensor y = Tensor::zeros(x->value.shape());
  Tensor mean = Tensor::zeros({n}), rstd = Tensor::zeros({n});
  layer_norm_forward(x->value, weight->value, bias ? &bias->value : nullptr, eps, y, mean, rstd);
  const bool grad = needs_grad({&x, &weight, &bias});
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, x, weight, bias, mean, rstd]() {
    if (!result->grad.defined()) return;
    layer_norm_backward(result->grad, x->value, weight->value, mean, rstd,
                        x->requires_grad ? &x->grad_buffer() : nullptr,
                        weight->requires_grad ? &weight->grad_buffer() : nullptr,
                        bias && bias->requires_grad ? &bias->grad_buffer() : nullptr);
  });
  return result;
}

}  // namespace peft
