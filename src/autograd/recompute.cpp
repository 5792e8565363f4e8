#include "autograd/recompute.h"

#include <utility>

namespace peft {

Var recompute_in_backward(const Var& x, std::function<Var(const Var&)> f, Rng* dropout_rng) {
  Tape* tape = active_tape();
  if (!tape) return f(x);
  const uint64_t draws_from = dropout_rng ? dropout_rng->position() : 0;
  Tensor y_value;
  {
    NoGradGuard off;
    y_value = f(x)->value;
  }
  // Whether y depends on a parameter is only known by recording f; inside a model's layers it
  // always does while training (the method's parameters or the input's path to them).
  Var y = make_output(std::move(y_value), true);
  tape->record([x, y, f = std::move(f), dropout_rng, draws_from] {
    if (!y->grad.defined()) return;  // nothing downstream used y
    Var x_again = x->requires_grad ? variable(x->value) : constant(x->value);
    Tape inner;
    const uint64_t draws_now = dropout_rng ? dropout_rng->position() : 0;
    if (dropout_rng) dropout_rng->set_position(draws_from);
    Var y_again = f(x_again);
    if (dropout_rng) dropout_rng->set_position(draws_now);
    if (!y_again->requires_grad) return;  // f read no parameter and x needs no gradient
    inner.backward(y_again, y->grad);
    if (x->requires_grad && x_again->grad.defined()) {
      Tensor& g = x->grad_buffer();
      float* dst = g.data<float>();
      const float* src = x_again->grad.data<float>();
      for (int64_t i = 0, n = g.numel(); i < n; ++i) dst[i] += src[i];
    }
  });
  return y;
}

}  // namespace peft
