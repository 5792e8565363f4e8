// Multi-layer, optionally bidirectional LSTM over batch-first sequences, with torch.nn.LSTM's
// parameters and semantics (P-Tuning v1's prompt encoder: LSTM(input_size, hidden,
// num_layers=2, bidirectional=True, batch_first=True)). Per layer k and direction, torch's
//   weight_ih_l{k}[_reverse] [4H, in], weight_hh_l{k}[_reverse] [4H, H], bias_ih / bias_hh [4H]
// with the gates stacked in the order i, f, g, o:
//   z = x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh
//   i, f, o = σ(z_i), σ(z_f), σ(z_o);  g = tanh(z_g)
//   c_t = f ⊙ c_{t−1} + i ⊙ g;  h_t = o ⊙ tanh(c_t)
// Initial h and c are zero. The reverse direction runs t = T−1 … 0. Output [B, T, D·H] (D = 2
// when bidirectional) with the forward direction in [..., :H] and the reverse in [..., H:]; layer
// k > 0 reads layer k − 1's output. Backward is full BPTT to the input and every trainable weight.
#pragma once

#include <vector>

#include "autograd/tape.h"
#include "core/rng.h"

namespace peft {

struct LstmWeights {
  Var w_ih, w_hh;  // [4H, in], [4H, H]
  Var b_ih, b_hh;  // [4H] each; null when the LSTM has no bias (torch bias=False)
};

struct LstmParams {
  int num_layers = 1;
  bool bidirectional = false;
  // Layer k, direction d (0 forward, 1 reverse) at [k · D + d], torch's _flat_weights order.
  std::vector<LstmWeights> weights;
  float dropout = 0.0f;  // on each layer's output but the last (torch's dropout); the caller
                         // sets it only while training
  Rng* rng = nullptr;    // required when dropout > 0
};

// x [B, T, in] -> [B, T, D·H]
Var lstm(const Var& x, const LstmParams& params);
// One layer: one LstmWeights per direction (1 or 2).
Var lstm_layer(const Var& x, const std::vector<LstmWeights>& directions);

// One time step of B rows. pre [B, 4H] = x_t·W_ihᵀ + b_ih + b_hh, computed for all steps by one
// GEMM before the recurrence. Writes the activated gates (i, f, g, o) [B, 4H], c and h [B, H].
void lstm_cell_forward(int64_t B, int64_t H, const float* pre, const float* h_prev,
                       const float* c_prev, const Tensor& w_hh, float* gates, float* c, float* h);
// The step's backward. dh [B, H] is the whole gradient reaching h_t (output + step t+1); dc [B, H]
// holds dL/dc_t on entry and dL/dc_{t−1} on return. Writes dz [B, 4H] (= dL/dpre) and adds
// dh_prev += dz·W_hh and dw_hh += dzᵀ·h_prev where those are non-null.
//   dc_t += dh ⊙ o ⊙ (1 − tanh²(c_t));  dz_i = dc_t ⊙ g ⊙ i(1 − i);  dz_f = dc_t ⊙ c_{t−1} ⊙ f(1 −
//   f) dz_g = dc_t ⊙ i ⊙ (1 − g²);  dz_o = dh ⊙ tanh(c_t) ⊙ o(1 − o);  dc_{t−1} = dc_t ⊙ f
void lstm_cell_backward(int64_t B, int64_t H, const float* gates, const float* c_prev,
                        const float* c, const float* h_prev, const Tensor& w_hh, const float* dh,
                        float* dc, float* dz, float* dh_prev, float* dw_hh);

}  // namespace peft
