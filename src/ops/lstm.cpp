#include "ops/lstm.h"

#include <algorithm>
#include <cmath>

#include "kernels/gemm.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"

namespace peft {
namespace {

inline float sigmoid_f(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}

Tensor* grad_of(const Var& v) {
  return v && v->requires_grad ? &v->grad_buffer() : nullptr;
}

// What one direction keeps for backward, indexed by time t (not by step order): the activated
// gates [T, B, 4H], the cell states c [T, B, H] and the hidden states h [T, B, H].
struct DirectionSaved {
  Tensor gates, c, h;
};

// The time step whose state feeds step t: t − 1 forward, t + 1 in reverse; −1 at the first step.
inline int64_t previous_step(int64_t t, int64_t T, bool reverse) {
  const int64_t p = reverse ? t + 1 : t - 1;
  return p >= 0 && p < T ? p : -1;
}

void check_direction(const LstmWeights& w, int64_t in, int64_t H) {
  PEFT_CHECK(w.w_ih && w.w_hh, "lstm: missing weight_ih / weight_hh");
  const Tensor& wih = w.w_ih->value;
  const Tensor& whh = w.w_hh->value;
  PEFT_CHECK(wih.ndim() == 2 && wih.dim(0) == 4 * H && wih.dim(1) == in,
             "lstm: weight_ih {} for input size {} and hidden size {}", wih.describe(), in, H);
  PEFT_CHECK(whh.ndim() == 2 && whh.dim(0) == 4 * H && whh.dim(1) == H,
             "lstm: weight_hh {} for hidden size {}", whh.describe(), H);
  for (const Var* b : {&w.b_ih, &w.b_hh})
    PEFT_CHECK(!*b || ((*b)->value.ndim() == 1 && (*b)->value.dim(0) == 4 * H),
               "lstm: bias {} for hidden size {}", (*b)->value.describe(), H);
}

// pre [T·B, 4H] = xt · W_ihᵀ + b_ih + b_hh for every step at once.
Tensor input_projection(const Tensor& xt, const LstmWeights& w, int64_t rows, int64_t H) {
  Tensor pre = Tensor::zeros({rows, 4 * H});
  matmul_x_wt(xt.data<float>(), rows, w.w_ih->value, pre.data<float>(), 0.0f);
  float* p = pre.data<float>();
  for (const Var* b : {&w.b_ih, &w.b_hh}) {
    if (!*b) continue;
    const std::vector<float> bias = (*b)->value.to_vector();
#pragma omp parallel for schedule(static) if (rows * H > (1 << 14))
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < 4 * H; ++k) p[r * 4 * H + k] += bias[size_t(k)];
  }
  return pre;
}

}  // namespace

void lstm_cell_forward(int64_t B, int64_t H, const float* pre, const float* h_prev,
                       const float* c_prev, const Tensor& w_hh, float* gates, float* c, float* h) {
  const int64_t G = 4 * H;
  std::copy(pre, pre + B * G, gates);
  matmul_x_wt(h_prev, B, w_hh, gates, 1.0f);  // z = pre + h_prev · W_hhᵀ
  for (int64_t b = 0; b < B; ++b) {
    float* z = gates + b * G;
    for (int64_t j = 0; j < H; ++j) {
      const float i = sigmoid_f(z[j]), f = sigmoid_f(z[H + j]);
      const float g = std::tanh(z[2 * H + j]), o = sigmoid_f(z[3 * H + j]);
      z[j] = i, z[H + j] = f, z[2 * H + j] = g, z[3 * H + j] = o;
      const float ct = f * c_prev[b * H + j] + i * g;
      c[b * H + j] = ct;
      h[b * H + j] = o * std::tanh(ct);
    }
  }
}

void lstm_cell_backward(int64_t B, int64_t H, const float* gates, const float* c_prev,
                        const float* c, const float* h_prev, const Tensor& w_hh, const float* dh,
                        float* dc, float* dz, float* dh_prev, float* dw_hh) {
  const int64_t G = 4 * H;
  for (int64_t b = 0; b < B; ++b) {
    const float* a = gates + b * G;
    float* d = dz + b * G;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const float i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
      const float tc = std::tanh(c[k]);
      const float dct = dc[k] + dh[k] * o * (1.0f - tc * tc);
      d[j] = dct * g * i * (1.0f - i);
      d[H + j] = dct * c_prev[k] * f * (1.0f - f);
      d[2 * H + j] = dct * i * (1.0f - g * g);
      d[3 * H + j] = dh[k] * tc * o * (1.0f - o);
      dc[k] = dct * f;
    }
  }
  if (dh_prev) matmul_dy_w(dz, B, w_hh, dh_prev, 1.0f);
  if (dw_hh) gemm_f32(true, false, G, H, B, 1.0f, dz, G, h_prev, H, 1.0f, dw_hh, H);
}

Var lstm_layer(const Var& x, const std::vector<LstmWeights>& dirs) {
  PEFT_CHECK(x->value.ndim() == 3, "lstm: input {} must be [B, T, in]", x->value.describe());
  PEFT_CHECK(dirs.size() == 1 || dirs.size() == 2, "lstm: {} directions", dirs.size());
  const int64_t B = x->value.dim(0), T = x->value.dim(1), in = x->value.dim(2);
  const int64_t H = dirs[0].w_hh->value.dim(1), D = int64_t(dirs.size());
  for (const LstmWeights& w : dirs) check_direction(w, in, H);

  // Time-major input, so that every step's rows are contiguous for the recurrent GEMMs.
  Tensor xt = Tensor::zeros({T, B, in});
  transpose_forward(x->value, 0, 1, xt);
  Tensor y = Tensor::zeros({B, T, D * H});
  Tensor zero_state = Tensor::zeros({B, H});
  std::vector<DirectionSaved> saved(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d) {
    const LstmWeights& w = dirs[size_t(d)];
    const bool reverse = d == 1;
    DirectionSaved& s = saved[size_t(d)];
    s.gates = Tensor::zeros({T, B, 4 * H});
    s.c = Tensor::zeros({T, B, H});
    s.h = Tensor::zeros({T, B, H});
    const Tensor pre = input_projection(xt, w, T * B, H);
    float* hs = s.h.data<float>();
    float* cs = s.c.data<float>();
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? T - 1 - step : step, p = previous_step(t, T, reverse);
      const float* hp = p >= 0 ? hs + p * B * H : zero_state.data<float>();
      const float* cp = p >= 0 ? cs + p * B * H : zero_state.data<float>();
      lstm_cell_forward(B, H, pre.data<float>() + t * B * 4 * H, hp, cp, w.w_hh->value,
                        s.gates.data<float>() + t * B * 4 * H, cs + t * B * H, hs + t * B * H);
    }
    float* py = y.data<float>();
    for (int64_t b = 0; b < B; ++b)  // y[b, t, d·H + j] = h_t[b, j]
      for (int64_t t = 0; t < T; ++t)
        std::copy(hs + (t * B + b) * H, hs + (t * B + b + 1) * H, py + (b * T + t) * D * H + d * H);
  }

  bool grad = needs_grad({&x});
  // needs_grad first (no short cut): a watching tape notes every direction's weights as read.
  for (const LstmWeights& w : dirs) grad = needs_grad({&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) || grad;
  Var result = make_output(std::move(y), grad);
  if (!grad) return result;
  active_tape()->record([result, x, dirs, xt, saved, zero_state, B, T, in, H, D]() {
    if (!result->grad.defined()) return;
    const float* dy = result->grad.data<float>();
    Tensor dxt = x->requires_grad ? Tensor::zeros({T, B, in}) : Tensor();
    Tensor dh = Tensor::zeros({B, H}), dh_next = Tensor::zeros({B, H}), dc = Tensor::zeros({B, H});
    for (int64_t d = 0; d < D; ++d) {
      const LstmWeights& w = dirs[size_t(d)];
      const bool reverse = d == 1;
      const DirectionSaved& s = saved[size_t(d)];
      const float* hs = s.h.data<float>();
      const float* cs = s.c.data<float>();
      Tensor dz = Tensor::zeros({T * B, 4 * H});  // dL/dpre, by time
      Tensor* dw_hh = grad_of(w.w_hh);
      dh_next.zero();
      dc.zero();
      for (int64_t step = T - 1; step >= 0; --step) {
        const int64_t t = reverse ? T - 1 - step : step, p = previous_step(t, T, reverse);
        float* pdh = dh.data<float>();
        const float* pn = dh_next.data<float>();
        for (int64_t b = 0; b < B; ++b)  // dh = dy[b, t, d·H : (d+1)·H] + (from step t+1)
          for (int64_t j = 0; j < H; ++j)
            pdh[b * H + j] = dy[(b * T + t) * D * H + d * H + j] + pn[b * H + j];
        dh_next.zero();
        const float* hp = p >= 0 ? hs + p * B * H : zero_state.data<float>();
        const float* cp = p >= 0 ? cs + p * B * H : zero_state.data<float>();
        lstm_cell_backward(B, H, s.gates.data<float>() + t * B * 4 * H, cp, cs + t * B * H, hp,
                           w.w_hh->value, pdh, dc.data<float>(), dz.data<float>() + t * B * 4 * H,
                           p >= 0 ? dh_next.data<float>() : nullptr,
                           dw_hh && p >= 0 ? dw_hh->data<float>() : nullptr);
      }
      // The input projection's backward, all steps at once.
      if (dxt.defined())
        matmul_dy_w(dz.data<float>(), T * B, w.w_ih->value, dxt.data<float>(), 1.0f);
      if (Tensor* dw = grad_of(w.w_ih))  // dW_ih += dzᵀ · xt
        gemm_f32(true, false, 4 * H, in, T * B, 1.0f, dz.data<float>(), 4 * H, xt.data<float>(), in,
                 1.0f, dw->data<float>(), in);
      for (const Var* b : {&w.b_ih, &w.b_hh})
        if (Tensor* db = grad_of(*b)) {  // db += Σ_rows dz
          const float* pz = dz.data<float>();
          float* pb = db->data<float>();
          for (int64_t r = 0; r < T * B; ++r)
            for (int64_t k = 0; k < 4 * H; ++k) pb[k] += pz[r * 4 * H + k];
        }
    }
    if (dxt.defined()) transpose_backward(dxt, 0, 1, x->grad_buffer());
  });
  return result;
}

Var lstm(const Var& x, const LstmParams& params) {
  const int D = params.bidirectional ? 2 : 1;
  PEFT_CHECK(params.num_layers >= 1 && params.weights.size() == size_t(params.num_layers * D),
             "lstm: {} weight sets for {} layers × {} directions", params.weights.size(),
             params.num_layers, D);
  Var h = x;
  for (int k = 0; k < params.num_layers; ++k) {
    if (k > 0 && params.dropout > 0.0f) {
      PEFT_CHECK(params.rng != nullptr, "lstm dropout needs an Rng");
      h = dropout(h, params.dropout, *params.rng);
    }
    const auto first = params.weights.begin() + long(k * D);
    h = lstm_layer(h, std::vector<LstmWeights>(first, first + D));
  }
  return h;
}

}  // namespace peft
