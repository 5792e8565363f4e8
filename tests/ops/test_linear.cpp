#include <gtest/gtest.h>

#include "autograd/tape.h"
#include "ops/linear.h"
#include "testing.h"

namespace peft {
namespace {
using testing::Vec;

struct LinearCase {
  int64_t n, in, out, r;
};

// y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ in f64; inputs packed as [x, W, b, A, B].
Vec linear_ref(const Vec& p, const LinearCase& c, double s) {
  const double* x = p.data();
  const double* w = x + c.n * c.in;
  const double* b = w + c.out * c.in;
  const double* a = b + c.out;
  const double* bb = a + c.r * c.in;
  Vec y(size_t(c.n * c.out));
  for (int64_t i = 0; i < c.n; ++i) {
    Vec u(size_t(c.r), 0.0);
    for (int64_t k = 0; k < c.r; ++k)
      for (int64_t j = 0; j < c.in; ++j) u[size_t(k)] += x[i * c.in + j] * a[k * c.in + j];
    for (int64_t o = 0; o < c.out; ++o) {
      double acc = b[o];
      for (int64_t j = 0; j < c.in; ++j) acc += x[i * c.in + j] * w[o * c.in + j];
      for (int64_t k = 0; k < c.r; ++k) acc += s * u[size_t(k)] * bb[o * c.r + k];
      y[size_t(i * c.out + o)] = acc;
    }
  }
  return y;
}

class LinearTest : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearTest, ForwardAndBackwardMatchF64Reference) {
  const LinearCase c = GetParam();
  const double s = 0.75;
  const size_t sizes[] = {size_t(c.n * c.in), size_t(c.out * c.in), size_t(c.out),
                          size_t(c.r * c.in), size_t(c.out * c.r)};
  Vec packed = testing::random_vec(sizes[0] + sizes[1] + sizes[2] + sizes[3] + sizes[4], 11);
  std::vector<Tensor> parts;
  const Shape shapes[] = {{c.n, c.in}, {c.out, c.in}, {c.out}, {c.r, c.in}, {c.out, c.r}};
  size_t off = 0;
  for (int i = 0; i < 5; ++i) {
    parts.push_back(testing::to_tensor(
        Vec(packed.begin() + long(off), packed.begin() + long(off + sizes[i])), shapes[i]));
    off += sizes[i];
  }
  Var x = variable(parts[0]), w = variable(parts[1]), b = variable(parts[2]);
  LoraBranch lora{variable(parts[3]), variable(parts[4]), float(s)};
  Tape tape;
  Var y = linear(x, w, b, &lora);
  auto ref = [&](const Vec& p) { return linear_ref(p, c, s); };
  EXPECT_TRUE(testing::all_close(testing::to_vec(y->value), ref(packed), tol::kReductionAbs,
                                 tol::kReductionRel));

  Vec g = testing::random_vec(size_t(c.n * c.out), 5);
  tape.backward(y, testing::to_tensor(g, {c.n, c.out}));
  Vec ours;
  for (const Var& v : {x, w, b, lora.A, lora.B}) {
    Vec part = testing::to_vec(v->grad);
    ours.insert(ours.end(), part.begin(), part.end());
  }
  EXPECT_TRUE(testing::gradient_close(ours, testing::finite_difference_vjp(ref, packed, g)));
}

INSTANTIATE_TEST_SUITE_P(OddShapes, LinearTest,
                         ::testing::Values(LinearCase{1, 1, 1, 1}, LinearCase{3, 7, 5, 2},
                                           LinearCase{13, 17, 19, 4}, LinearCase{5, 33, 31, 8}));

TEST(Linear, FrozenWeightGetsNoGradientBuffer) {
  Var x = variable(testing::to_tensor(testing::random_vec(12, 1), {3, 4}));
  Var w = constant(testing::to_tensor(testing::random_vec(20, 2), {5, 4}));
  Tape tape;
  Var y = linear(x, w);
  tape.backward(y, Tensor::zeros({3, 5}));
  EXPECT_FALSE(w->grad.defined());
  EXPECT_TRUE(x->grad.defined());
}

TEST(Linear, NothingIsRecordedWithoutTrainableInputs) {
  Tape tape;
  Var y = linear(constant(Tensor::zeros({2, 4})), constant(Tensor::zeros({3, 4})));
  EXPECT_EQ(tape.size(), 0u);
  EXPECT_FALSE(y->requires_grad);
}

TEST(Lora, IdentityAtInitWhenBIsZero) {
  Tensor x = testing::to_tensor(testing::random_vec(6 * 8, 3), {2, 3, 8});
  Tensor w = testing::to_tensor(testing::random_vec(5 * 8, 4), {5, 8});
  LoraBranch lora{variable(testing::to_tensor(testing::random_vec(2 * 8, 5), {2, 8})),
                  variable(Tensor::zeros({5, 2})), 2.0f};
  Var plain = linear(constant(x), constant(w));
  Var with = linear(constant(x), constant(w), nullptr, &lora);
  EXPECT_EQ(with->value.shape(), (Shape{2, 3, 5}));
  EXPECT_EQ(plain->value.to_vector(), with->value.to_vector());
}

TEST(Linear, StoredSmallerWeightsMatchTheirF32Values) {
  const int64_t n = 7, in = 64, out = 300;  // out > one 256-row panel
  Tensor x = testing::to_tensor(testing::random_vec(size_t(n * in), 8), {n, in});
  Tensor w = testing::to_tensor(testing::random_vec(size_t(out * in), 9), {out, in});
  Tensor g = testing::to_tensor(testing::random_vec(size_t(n * out), 10), {n, out});
  for (DType t : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0}) {
    for (Bf16Mode mode : testing::bf16_modes_here()) {
      if (t != DType::BF16 && mode == Bf16Mode::Native) continue;
      const testing::Bf16ModeScope scope(mode);
      // The native bf16 GEMM rounds its f32 operand (x forward, g backward) to bf16 by design;
      // the reference does the same, so both paths are held to f32 accuracy.
      const bool rounds = mode == Bf16Mode::Native;
      Tensor stored = w.to(t);
      Tensor w32 = stored.to(DType::F32);  // what the stored weight means
      Var x_var = variable(x);
      Tape tape;
      Var y = linear(x_var, constant(stored));
      Var y32 = linear(constant(rounds ? testing::round_to_bf16(x) : x), constant(w32));
      EXPECT_TRUE(
          testing::all_close(testing::to_vec(y->value), testing::to_vec(y32->value), 1e-5, 1e-5))
          << dtype_name(t) << (rounds ? " native" : "");
      tape.backward(y, g);
      Tensor dx = Tensor::zeros({n, in});
      linear_backward(rounds ? testing::round_to_bf16(g) : g, x, w32, &dx, nullptr, nullptr);
      EXPECT_TRUE(testing::all_close(testing::to_vec(x_var->grad), testing::to_vec(dx), 1e-5, 1e-5))
          << dtype_name(t) << (rounds ? " native" : "");
    }
  }
}

TEST(Lora, DropoutIsSeededAndOnlyOnTheBranch) {
  Tensor x = testing::to_tensor(testing::random_vec(4 * 16, 3), {4, 16});
  Tensor w = testing::to_tensor(testing::random_vec(8 * 16, 4), {8, 16});
  auto run = [&](uint64_t seed) {
    Rng rng(seed);
    LoraBranch lora{variable(testing::to_tensor(testing::random_vec(2 * 16, 5), {2, 16})),
                    variable(testing::to_tensor(testing::random_vec(8 * 2, 6), {8, 2})), 1.0f, 0.5f,
                    &rng};
    Tape tape;
    return linear(constant(x), constant(w), nullptr, &lora)->value.to_vector();
  };
  EXPECT_EQ(run(1), run(1));
  EXPECT_NE(run(1), run(2));
}

}  // namespace
}  // namespace peft
