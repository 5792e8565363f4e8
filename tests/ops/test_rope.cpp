#include <gtest/gtest.h>

#include <cmath>

#include "op_check.h"
#include "ops/rope.h"

namespace peft {
namespace {
using testing::Vec;

// RoPE in f64 on [B, T, H, D] with rotate_half pairing (i, i + D/2). The angle is formed as the
// op (and transformers) form it: f32 inv_freq times the position, rounded to f32.
Vec rope_ref(const Vec& x, const Shape& s, const std::vector<int32_t>& pos, double theta) {
  const int64_t B = s[0], T = s[1], H = s[2], D = s[3], half = D / 2;
  Vec y(x.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const float inv_freq = float(1.0 / std::pow(theta, double(2 * i) / double(D)));
          const double a = double(float(pos[size_t(b * T + t)]) * inv_freq);
          const size_t o = size_t(((b * T + t) * H + h) * D + i);
          const double x1 = x[o], x2 = x[o + size_t(half)];
          y[o] = x1 * std::cos(a) - x2 * std::sin(a);
          y[o + size_t(half)] = x2 * std::cos(a) + x1 * std::sin(a);
        }
  return y;
}

struct RopeCase {
  Shape shape;  // [B, T, H, D]
  int32_t first_position;
  float theta;
};

void PrintTo(const RopeCase& c, std::ostream* os) {
  *os << shape_str(c.shape) << " from position " << c.first_position << ", theta " << c.theta;
}

class RopeTest : public ::testing::TestWithParam<RopeCase> {};

TEST_P(RopeTest, ForwardAndBackwardMatchF64Reference) {
  const RopeCase c = GetParam();
  const int64_t B = c.shape[0], T = c.shape[1];
  std::vector<int32_t> pos(size_t(B * T));
  for (int64_t b = 0; b < B; ++b)  // each batch row starts elsewhere (left padding, caches)
    for (int64_t t = 0; t < T; ++t) pos[size_t(b * T + t)] = c.first_position + int32_t(3 * b + t);
  const Tensor positions = Tensor::from_vector_i32(pos, {B, T});
  testing::check_op(
      {{c.shape}}, [&](const std::vector<Var>& in) { return rope(in[0], positions, c.theta); },
      [&](const testing::Vecs& in) { return rope_ref(in[0], c.shape, pos, c.theta); },
      tol::kForwardAbs, tol::kForwardRel);
}

INSTANTIATE_TEST_SUITE_P(OddShapes, RopeTest,
                         ::testing::Values(RopeCase{{1, 1, 1, 2}, 0, 10000.0f},
                                           RopeCase{{2, 5, 3, 4}, 7, 10000.0f},
                                           RopeCase{{1, 7, 2, 6}, 1000, 1000000.0f},
                                           RopeCase{{3, 3, 1, 34}, 4093, 500000.0f}));

TEST(Rope, UsesRotateHalfPairing) {
  // D = 4, position 1, θ = 10000: frequencies 1 and 0.01 pair (x0, x2) and (x1, x3).
  Var y = rope(constant(Tensor::from_vector({1, 2, 3, 4}, {1, 1, 1, 4})), 1, 10000.0f);
  const double c1 = std::cos(1.0), s1 = std::sin(1.0), c2 = std::cos(0.01), s2 = std::sin(0.01);
  const Vec expected = {1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + 1 * s1, 4 * c2 + 2 * s2};
  EXPECT_TRUE(
      testing::all_close(testing::to_vec(y->value), expected, tol::kForwardAbs, tol::kForwardRel));
}

TEST(Rope, StartOffsetMatchesExplicitPositions) {
  const Shape shape{2, 5, 3, 8};
  Tensor x = testing::to_tensor(testing::random_vec(size_t(shape_numel(shape)), 3), shape);
  std::vector<int32_t> pos;
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 5; ++t) pos.push_back(11 + t);
  Var a = rope(constant(x), 11, 10000.0f);
  Var b = rope(constant(x), Tensor::from_vector_i32(pos, {2, 5}), 10000.0f);
  Var shared = rope(constant(x), Tensor::from_vector_i32({11, 12, 13, 14, 15}, {1, 5}), 10000.0f);
  EXPECT_EQ(a->value.to_vector(), b->value.to_vector());
  EXPECT_EQ(a->value.to_vector(), shared->value.to_vector());
}

TEST(Rope, PositionZeroIsIdentityAndNormIsPreserved) {
  const Shape shape{1, 6, 2, 10};
  Tensor x = testing::to_tensor(testing::random_vec(size_t(shape_numel(shape)), 4), shape);
  Var at0 = rope(constant(x), Tensor::from_vector_i32(std::vector<int32_t>(6, 0), {1, 6}), 1e4f);
  EXPECT_EQ(at0->value.to_vector(), x.to_vector());
  const Vec xs = testing::to_vec(x), ys = testing::to_vec(rope(constant(x), 37, 1e4f)->value);
  for (size_t v = 0; v < xs.size(); v += 10) {  // every head vector keeps its length
    double nx = 0, ny = 0;
    for (size_t d = 0; d < 10; ++d) nx += xs[v + d] * xs[v + d], ny += ys[v + d] * ys[v + d];
    EXPECT_NEAR(std::sqrt(ny), std::sqrt(nx), tol::kForwardRel * std::sqrt(nx));
  }
}

TEST(Rope, ScoresDependOnlyOnRelativePosition) {
  // ⟨rope(q, m), rope(k, n)⟩ is a function of m − n: shift both and the score stays.
  const Shape shape{1, 1, 1, 16};
  Tensor q = testing::to_tensor(testing::random_vec(16, 5), shape);
  Tensor k = testing::to_tensor(testing::random_vec(16, 6), shape);
  auto score = [&](int64_t m, int64_t n) {
    const Vec a = testing::to_vec(rope(constant(q), m, 10000.0f)->value);
    const Vec b = testing::to_vec(rope(constant(k), n, 10000.0f)->value);
    double s = 0;
    for (size_t d = 0; d < 16; ++d) s += a[d] * b[d];
    return s;
  };
  EXPECT_NEAR(score(5, 2), score(25, 22), tol::kReductionAbs);
  EXPECT_NEAR(score(2, 5), score(9, 12), tol::kReductionAbs);
}

}  // namespace
}  // namespace peft
