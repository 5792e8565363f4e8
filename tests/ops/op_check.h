// Shared driver for the op tests: builds Vars from f64 data (rounded to f32 first, so that our op
// and the f64 reference see the same inputs), runs the op under a Tape, compares the forward with
// the reference and every trainable input's gradient with f64 central differences of it.
#pragma once

#include <functional>
#include <vector>

#include "autograd/tape.h"
#include "testing.h"

namespace peft::testing {

struct OpInput {
  Shape shape;
  bool trainable = true;  // variable (gets a gradient) or constant (must get no gradient buffer)
  double scale = 1.0;     // values uniform in [−scale, scale]
};
using Vecs = std::vector<Vec>;
using OpFn = std::function<Var(const std::vector<Var>&)>;
using RefFn = std::function<Vec(const Vecs&)>;

inline Vec round_to_f32(Vec v) {
  for (double& x : v) x = double(float(x));
  return v;
}

// Forward within |ours − ref| ≤ abs + rel·|ref|; backward of Σ g ⊙ y (g random) within
// tol::kBackwardRel of the central differences, input by input.
inline void check_op(const std::vector<OpInput>& inputs, const OpFn& op, const RefFn& ref,
                     double abs, double rel, uint64_t seed = 1) {
  Vecs values;
  std::vector<Var> vars;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const OpInput& in = inputs[i];
    values.push_back(
        round_to_f32(random_vec(size_t(shape_numel(in.shape)), seed * 100 + i, in.scale)));
    Tensor t = to_tensor(values.back(), in.shape);
    vars.push_back(in.trainable ? variable(t) : constant(t));
  }
  Tape tape;
  Var y = op(vars);
  const Vec expected = ref(values);
  EXPECT_TRUE(all_close(to_vec(y->value), expected, abs, rel)) << "forward";
  bool any_trainable = false;
  for (const OpInput& in : inputs) any_trainable = any_trainable || in.trainable;
  if (!any_trainable) {
    EXPECT_FALSE(y->requires_grad);
    EXPECT_EQ(tape.size(), 0u);
    return;
  }
  const Vec g = random_vec(expected.size(), seed * 100 + 99);
  tape.backward(y, to_tensor(g, y->value.shape()));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].trainable) {
      EXPECT_FALSE(vars[i]->grad.defined()) << "frozen input " << i << " got a gradient buffer";
      continue;
    }
    auto partial = [&](const Vec& xi) {
      Vecs v = values;
      v[i] = xi;
      return ref(v);
    };
    const Vec fd = finite_difference_vjp(partial, values[i], g);
    const Vec ours = vars[i]->grad.defined() ? to_vec(vars[i]->grad) : Vec(fd.size(), 0.0);
    EXPECT_TRUE(gradient_close(ours, fd)) << "gradient of input " << i;
  }
}

}  // namespace peft::testing
