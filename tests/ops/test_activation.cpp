#include <gtest/gtest.h>

#include <cmath>

#include "op_check.h"
#include "ops/activation.h"

namespace peft {
namespace {
using testing::Vec;
using testing::Vecs;

double sigmoid_ref(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

double activation_ref(Activation a, double x) {
  switch (a) {
    case Activation::Relu:
      return x > 0 ? x : 0;
    case Activation::Silu:
      return x * sigmoid_ref(x);
    case Activation::Gelu:
      return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Activation::GeluTanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case Activation::Tanh:
      return std::tanh(x);
    case Activation::Sigmoid:
      return sigmoid_ref(x);
  }
  return 0;
}

class ActivationTest : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationTest, MatchesF64Reference) {
  const Activation a = GetParam();
  for (const Shape& shape : {Shape{1}, Shape{7}, Shape{3, 13}, Shape{2, 5, 17}}) {
    testing::check_op(
        {{shape, true, 5.0}}, [&](const auto& v) { return activation(v[0], a); },
        [&](const Vecs& v) {
          Vec y(v[0].size());
          for (size_t i = 0; i < y.size(); ++i) y[i] = activation_ref(a, v[0][i]);
          return y;
        },
        tol::kForwardAbs, tol::kForwardRel, uint64_t(shape.size()));
  }
}

TEST_P(ActivationTest, NameRoundTrips) {
  EXPECT_EQ(activation_from_name(activation_name(GetParam())), GetParam());
}

INSTANTIATE_TEST_SUITE_P(All, ActivationTest,
                         ::testing::Values(Activation::Relu, Activation::Silu, Activation::Gelu,
                                           Activation::GeluTanh, Activation::Tanh,
                                           Activation::Sigmoid),
                         [](const auto& info) { return std::string(activation_name(info.param)); });

TEST(Activation, HuggingFaceNamesMapToTheirFunctions) {
  EXPECT_EQ(activation_from_name("swish"), Activation::Silu);
  EXPECT_EQ(activation_from_name("gelu"), Activation::Gelu);
  EXPECT_EQ(activation_from_name("gelu_new"), Activation::GeluTanh);
  EXPECT_EQ(activation_from_name("gelu_pytorch_tanh"), Activation::GeluTanh);
  EXPECT_THROW(activation_from_name("mish"), Error);
}

TEST(Activation, ReluGradientAtZeroIsZeroAsTorch) {
  Var x = variable(Tensor::zeros({3}));
  Tape tape;
  Var y = relu(x);
  tape.backward(y, testing::to_tensor({1, 1, 1}, {3}));
  EXPECT_EQ(x->grad.to_vector(), (std::vector<float>{0, 0, 0}));
}

TEST(Activation, SaturatesWithoutNanAtExtremeInputs) {
  Var x = variable(testing::to_tensor({-1e4, -100, 100, 1e4}, {4}));
  for (Activation a : {Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::Tanh,
                       Activation::Sigmoid}) {
    Tape tape;
    Var y = activation(x, a);
    tape.backward(y, testing::to_tensor({1, 1, 1, 1}, {4}));
    for (float v : y->value.to_vector()) EXPECT_TRUE(std::isfinite(v)) << activation_name(a);
    for (float g : x->grad.to_vector()) EXPECT_TRUE(std::isfinite(g)) << activation_name(a);
    x->grad = Tensor();
  }
}

// silu(gate) ⊙ up
Vec swiglu_ref(const Vecs& v) {
  Vec y(v[0].size());
  for (size_t i = 0; i < y.size(); ++i) y[i] = v[0][i] * sigmoid_ref(v[0][i]) * v[1][i];
  return y;
}

TEST(Swiglu, MatchesF64Reference) {
  for (const Shape& shape : {Shape{1}, Shape{3, 11}, Shape{2, 3, 19}})
    testing::check_op(
        {{shape, true, 4.0}, {shape, true, 2.0}}, [](const auto& v) { return swiglu(v[0], v[1]); },
        swiglu_ref, tol::kForwardAbs, tol::kForwardRel);
}

TEST(Swiglu, FrozenUpGetsNoGradientBuffer) {
  testing::check_op(
      {{{5, 7}, true, 4.0}, {{5, 7}, false}}, [](const auto& v) { return swiglu(v[0], v[1]); },
      swiglu_ref, tol::kForwardAbs, tol::kForwardRel);
}

TEST(Swiglu, EqualsSiluTimesUp) {
  Var g = constant(testing::to_tensor(testing::random_vec(12, 3, 3.0), {12}));
  Var u = constant(testing::to_tensor(testing::random_vec(12, 4), {12}));
  const std::vector<float> s = silu(g)->value.to_vector(), up = u->value.to_vector(),
                           y = swiglu(g, u)->value.to_vector();
  for (size_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(y[i], s[i] * up[i]);
}

}  // namespace
}  // namespace peft
