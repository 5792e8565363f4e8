// Activations, elementwise on f32 tensors of any shape:
//   relu(x) = max(x, 0)                      (derivative 0 at x = 0, as torch)
//   silu(x) = x · σ(x)                       (HF "silu" / "swish")
//   gelu(x) = x · Φ(x) = ½x(1 + erf(x/√2))   (HF "gelu", torch approximate='none')
//   gelu_tanh(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))  (HF "gelu_new" / "gelu_pytorch_tanh")
//   tanh(x), sigmoid(x) = σ(x) = 1 / (1 + e⁻ˣ)
// and the gated feed-forward of Qwen2 / Llama: swiglu(gate, up) = silu(gate) ⊙ up, with gate and
// up as two tensors because decoders compute gate_proj and up_proj separately.
#pragma once

#include <string_view>

#include "autograd/tape.h"

namespace peft {

enum class Activation { Relu, Silu, Gelu, GeluTanh, Tanh, Sigmoid };

// Hugging Face's ACT2FN names ("relu", "silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh",
// "tanh", "sigmoid"); throws Error for any other name.
Activation activation_from_name(std::string_view hf_name);
const char* activation_name(Activation a);

Var activation(const Var& x, Activation a);
inline Var relu(const Var& x) {
  return activation(x, Activation::Relu);
}
inline Var silu(const Var& x) {
  return activation(x, Activation::Silu);
}
// approximate = true selects the tanh form (torch's approximate='tanh').
inline Var gelu(const Var& x, bool approximate = false) {
  return activation(x, approximate ? Activation::GeluTanh : Activation::Gelu);
}
// Shadows ::tanh inside namespace peft for unqualified calls: write std::tanh for floats.
inline Var tanh(const Var& x) {
  return activation(x, Activation::Tanh);
}
inline Var sigmoid(const Var& x) {
  return activation(x, Activation::Sigmoid);
}

Var swiglu(const Var& gate, const Var& up);

// Raw kernels; the backwards accumulate (+=) into dx (and dgate / dup where non-null).
void activation_forward(Activation a, const Tensor& x, Tensor& y);
// dx += dy ⊙ f'(x)
void activation_backward(Activation a, const Tensor& dy, const Tensor& x, Tensor& dx);
void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& y);
// dgate += dy ⊙ up ⊙ silu'(gate),  dup += dy ⊙ silu(gate),  silu'(g) = σ(g)(1 + g(1 − σ(g)))
void swiglu_backward(const Tensor& dy, const Tensor& gate, const Tensor& up, Tensor* dgate,
                     Tensor* dup);

}  // namespace peft
