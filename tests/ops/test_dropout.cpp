#include <gtest/gtest.h>

#include <cmath>

#include "core/threads.h"
#include "op_check.h"
#include "ops/dropout.h"

namespace peft {
namespace {
using testing::Vec;
using testing::Vecs;

TEST(Dropout, ReproducibleAcrossThreadCounts) {
  const int64_t n = 3 * 50021;  // large enough for the parallel loop, not a multiple of anything
  Tensor x = testing::to_tensor(testing::random_vec(size_t(n), 1), {3, n / 3});
  const int before = num_threads();
  std::vector<std::vector<float>> outs, grads;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Rng rng(42, 3);
    Var xv = variable(x);
    Tape tape;
    Var y = dropout(xv, 0.3f, rng);
    tape.backward(y, testing::to_tensor(Vec(size_t(n), 1.0), {3, n / 3}));
    outs.push_back(y->value.to_vector());
    grads.push_back(xv->grad.to_vector());
  }
  set_num_threads(before);
  EXPECT_EQ(outs[0], outs[1]);
  EXPECT_EQ(outs[0], outs[2]);
  EXPECT_EQ(grads[0], grads[1]);
  EXPECT_EQ(grads[0], grads[2]);
}

TEST(Dropout, InvertedScalingKeepsOrZeroesEachElement) {
  const int64_t n = 20011;
  const float p = 0.25f;
  Tensor x = testing::to_tensor(testing::random_vec(size_t(n), 2), {n});
  Rng rng(7);
  Tape tape;
  const std::vector<float> y = dropout(constant(x), p, rng)->value.to_vector(), xs = x.to_vector();
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (y[size_t(i)] == 0.0f) continue;
    ++kept;
    EXPECT_FLOAT_EQ(y[size_t(i)], xs[size_t(i)] / (1.0f - p));
  }
  // Binomial(n, 1 − p): within 5 standard deviations.
  const double sd = std::sqrt(double(n) * p * (1 - p));
  EXPECT_NEAR(double(kept), double(n) * (1 - p), 5 * sd);
}

// Whether to drop is the caller's (the ForwardContext's `training`), not whether a tape records:
// p = 0 is the identity; p > 0 drops with or without a tape.
TEST(Dropout, IdentityAtZeroPAndAppliedWhenAskedWithOrWithoutTape) {
  Var x = variable(testing::to_tensor(testing::random_vec(64, 3), {64}));
  Rng rng(1);
  EXPECT_EQ(dropout(x, 0.0f, rng), x);
  EXPECT_EQ(rng.position(), 0u) << "an identity dropout must not consume draws";
  Rng a(4), b(4);
  const std::vector<float> untaped = dropout(x, 0.5f, a)->value.to_vector();
  EXPECT_NE(untaped, x->value.to_vector());
  Tape tape;
  EXPECT_EQ(dropout(x, 0.5f, b)->value.to_vector(), untaped);
}

TEST(Dropout, SeedsAndSuccessiveCallsGiveDifferentMasks) {
  Tensor x = Tensor::zeros({64});
  x.fill(1.0f);
  Tape tape;
  Rng a(1), b(2), a2(1);
  const auto first = dropout(constant(x), 0.5f, a)->value.to_vector();
  EXPECT_NE(first, dropout(constant(x), 0.5f, b)->value.to_vector());
  EXPECT_NE(first, dropout(constant(x), 0.5f, a)->value.to_vector()) << "the stream must advance";
  EXPECT_EQ(first, dropout(constant(x), 0.5f, a2)->value.to_vector());
}

TEST(Dropout, GradientsMatchFiniteDifferencesForTheDrawnMask) {
  const float p = 0.4f;
  for (const Shape& shape : {Shape{1}, Shape{3, 7}, Shape{2, 5, 13}}) {
    const int64_t n = shape_numel(shape);
    auto ref = [&](const Vecs& v) {  // the same draws the op makes from Rng(9, 1), position 0
      Rng r(9, 1);
      Vec y(v[0].size());
      for (int64_t i = 0; i < n; ++i)
        y[size_t(i)] = r.uniform_at(uint64_t(i)) >= p ? v[0][size_t(i)] / (1.0 - p) : 0.0;
      return y;
    };
    Rng rng(9, 1);
    testing::check_op(
        {{shape}}, [&](const auto& v) { return dropout(v[0], p, rng); }, ref, tol::kForwardAbs,
        tol::kForwardRel);
  }
}

TEST(Dropout, POfOneDropsEverythingAndOutsideRangeFails) {
  Tensor x = Tensor::zeros({5});
  x.fill(2.0f);
  Rng rng(3);
  Tape tape;
  for (float v : dropout(constant(x), 1.0f, rng)->value.to_vector()) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(dropout(constant(x), 1.5f, rng), Error);
  EXPECT_THROW(dropout(constant(x), -0.1f, rng), Error);
}

}  // namespace
}  // namespace peft
