#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "op_check.h"
#include "ops/softmax.h"

namespace peft {
namespace {
using testing::Vec;

// Softmax over the last dimension in f64 (max-shifted); a row of −inf gives zeros.
Vec softmax_ref(const Vec& x, int64_t n) {
  Vec y(x.size(), 0.0);
  for (size_t r = 0; r < x.size() / size_t(n); ++r) {
    const double* xr = x.data() + r * size_t(n);
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, xr[j]);
    if (m == -INFINITY) continue;
    for (int64_t j = 0; j < n; ++j) s += std::exp(xr[j] - m);
    for (int64_t j = 0; j < n; ++j) y[r * size_t(n) + size_t(j)] = std::exp(xr[j] - m) / s;
  }
  return y;
}

struct SoftmaxCase {
  Shape shape;
  double scale;
};

void PrintTo(const SoftmaxCase& c, std::ostream* os) {
  *os << shape_str(c.shape) << ", scale " << c.scale;
}

class SoftmaxTest : public ::testing::TestWithParam<SoftmaxCase> {};

TEST_P(SoftmaxTest, ForwardAndBackwardMatchF64Reference) {
  const SoftmaxCase c = GetParam();
  const int64_t n = c.shape.back();
  testing::check_op(
      {{c.shape, true, c.scale}}, [](const std::vector<Var>& in) { return softmax(in[0]); },
      [n](const testing::Vecs& in) { return softmax_ref(in[0], n); }, tol::kForwardAbs,
      tol::kForwardRel);
}

// Widths 1, primes and non-multiples of 8 / 16 (the vector tails), and logits spread wide.
INSTANTIATE_TEST_SUITE_P(OddShapes, SoftmaxTest,
                         ::testing::Values(SoftmaxCase{{1}, 1.0}, SoftmaxCase{{3, 7}, 1.0},
                                           SoftmaxCase{{2, 3, 17}, 2.0},
                                           SoftmaxCase{{5, 33}, 8.0}));

TEST(Softmax, FullyMaskedRowGivesZerosNotNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  Tensor x = Tensor::from_vector({-inf, -inf, -inf, 0.5f, -inf, 1.5f}, {2, 3});
  Var in = variable(x);
  Tape tape;
  Var y = softmax(in);
  const std::vector<float> v = y->value.to_vector();
  EXPECT_EQ(v[0], 0.0f);
  EXPECT_EQ(v[1], 0.0f);
  EXPECT_EQ(v[2], 0.0f);
  EXPECT_EQ(v[4], 0.0f);
  EXPECT_NEAR(v[3] + v[5], 1.0, tol::kForwardAbs);
  tape.backward(y, Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}));
  for (float g : in->grad.to_vector()) EXPECT_TRUE(std::isfinite(g));
}

TEST(Softmax, LargeInputsDoNotOverflow) {
  Var y = softmax(constant(Tensor::from_vector({1000.0f, 1001.0f, -1000.0f}, {3})));
  const Vec ref = softmax_ref({1000, 1001, -1000}, 3);
  EXPECT_TRUE(
      testing::all_close(testing::to_vec(y->value), ref, tol::kForwardAbs, tol::kForwardRel));
}

TEST(ExpFast, WithinTwoUlpOfExactExp) {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 175.0f * float(i) / 200000.0f;
    const double exact = std::exp(double(x));
    worst = std::max(worst, std::fabs(double(exp_fast(x)) - exact) / exact);
  }
  EXPECT_LE(worst, tol::kExpFastRel) << "worst relative error";
  EXPECT_EQ(exp_fast(0.0f), 1.0f);
  EXPECT_EQ(exp_fast(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(exp_fast(-100.0f), 0.0f);
}

}  // namespace
}  // namespace peft
