#include <gtest/gtest.h>

#include <cmath>

#include "op_check.h"
#include "ops/norm.h"

namespace peft {
namespace {
using testing::OpInput;
using testing::Vec;
using testing::Vecs;

// y = x / sqrt(mean(x²) + eps) · w, row by row over the last dimension C.
Vec rms_norm_ref(const Vecs& v, int64_t C, double eps) {
  const Vec &x = v[0], &w = v[1];
  Vec y(x.size());
  for (size_t r = 0; r < x.size() / size_t(C); ++r) {
    double ss = 0;
    for (int64_t j = 0; j < C; ++j)
      ss += x[r * size_t(C) + size_t(j)] * x[r * size_t(C) + size_t(j)];
    const double rstd = 1.0 / std::sqrt(ss / double(C) + eps);
    for (int64_t j = 0; j < C; ++j)
      y[r * size_t(C) + size_t(j)] = x[r * size_t(C) + size_t(j)] * rstd * w[size_t(j)];
  }
  return y;
}

// y = (x − μ) / sqrt(σ² + eps) · γ + β, σ² biased; β absent when v has two entries.
Vec layer_norm_ref(const Vecs& v, int64_t C, double eps) {
  const Vec &x = v[0], &w = v[1];
  Vec y(x.size());
  for (size_t r = 0; r < x.size() / size_t(C); ++r) {
    const double* xr = x.data() + r * size_t(C);
    double mu = 0, var = 0;
    for (int64_t j = 0; j < C; ++j) mu += xr[j];
    mu /= double(C);
    for (int64_t j = 0; j < C; ++j) var += (xr[j] - mu) * (xr[j] - mu);
    const double rstd = 1.0 / std::sqrt(var / double(C) + eps);
    for (int64_t j = 0; j < C; ++j)
      y[r * size_t(C) + size_t(j)] =
          (xr[j] - mu) * rstd * w[size_t(j)] + (v.size() > 2 ? v[2][size_t(j)] : 0.0);
  }
  return y;
}

struct NormCase {
  Shape x;
  double eps;
};
void PrintTo(const NormCase& c, std::ostream* os) {
  *os << shape_str(c.x) << " eps " << c.eps;
}

class NormTest : public ::testing::TestWithParam<NormCase> {};

TEST_P(NormTest, RmsNormMatchesF64Reference) {
  const NormCase c = GetParam();
  const int64_t C = c.x.back();
  testing::check_op(
      {{c.x, true, 2.0}, {{C}}}, [&](const auto& v) { return rms_norm(v[0], v[1], float(c.eps)); },
      [&](const Vecs& v) { return rms_norm_ref(v, C, c.eps); }, tol::kReductionAbs,
      tol::kReductionRel);
}

TEST_P(NormTest, LayerNormMatchesF64Reference) {
  const NormCase c = GetParam();
  const int64_t C = c.x.back();
  testing::check_op(
      {{c.x, true, 2.0}, {{C}}, {{C}}},
      [&](const auto& v) { return layer_norm(v[0], v[1], v[2], float(c.eps)); },
      [&](const Vecs& v) { return layer_norm_ref(v, C, c.eps); }, tol::kReductionAbs,
      tol::kReductionRel);
}

TEST_P(NormTest, LayerNormWithoutBiasMatchesF64Reference) {
  const NormCase c = GetParam();
  const int64_t C = c.x.back();
  testing::check_op(
      {{c.x, true, 2.0}, {{C}}},
      [&](const auto& v) { return layer_norm(v[0], v[1], nullptr, float(c.eps)); },
      [&](const Vecs& v) { return layer_norm_ref(v, C, c.eps); }, tol::kReductionAbs,
      tol::kReductionRel);
}

TEST_P(NormTest, FrozenWeightsGetNoGradientBuffers) {
  const NormCase c = GetParam();
  const int64_t C = c.x.back();
  testing::check_op(
      {{c.x, true, 2.0}, {{C}, false}},
      [&](const auto& v) { return rms_norm(v[0], v[1], float(c.eps)); },
      [&](const Vecs& v) { return rms_norm_ref(v, C, c.eps); }, tol::kReductionAbs,
      tol::kReductionRel);
  testing::check_op(
      {{c.x, true, 2.0}, {{C}, false}, {{C}, false}},
      [&](const auto& v) { return layer_norm(v[0], v[1], v[2], float(c.eps)); },
      [&](const Vecs& v) { return layer_norm_ref(v, C, c.eps); }, tol::kReductionAbs,
      tol::kReductionRel);
}

// Rows of 1, primes, and widths that are not multiples of 8 / 16 or cross a 64-column block.
INSTANTIATE_TEST_SUITE_P(OddShapes, NormTest,
                         ::testing::Values(NormCase{{1, 1}, 1e-6}, NormCase{{3, 7}, 1e-6},
                                           NormCase{{2, 3, 17}, 1e-5}, NormCase{{5, 67}, 1e-6},
                                           NormCase{{2, 129}, 1e-12}));

TEST(RmsNorm, FrozenHalfWeightsMatchTheirF32Values) {
  Tensor x = testing::to_tensor(testing::random_vec(4 * 24, 1, 3.0), {4, 24});
  Tensor w = testing::to_tensor(testing::random_vec(24, 2), {24});
  for (DType t : {DType::BF16, DType::F16}) {
    Tensor stored = w.to(t);
    Tape tape;
    Var xv = variable(x);
    Var y = rms_norm(xv, constant(stored), 1e-6f);
    Var y32 = rms_norm(constant(x), constant(stored.to(DType::F32)), 1e-6f);
    EXPECT_EQ(y->value.to_vector(), y32->value.to_vector()) << dtype_name(t);
    Var z = layer_norm(xv, constant(stored), constant(stored), 1e-5f);
    Var z32 = layer_norm(constant(x), constant(stored.to(DType::F32)),
                         constant(stored.to(DType::F32)), 1e-5f);
    EXPECT_EQ(z->value.to_vector(), z32->value.to_vector()) << dtype_name(t);
  }
}

TEST(RmsNorm, ScaleInvariantInItsInput) {
  Tensor x = testing::to_tensor(testing::random_vec(3 * 10, 6), {3, 10});
  Tensor x8 = testing::to_tensor(testing::random_vec(3 * 10, 6, 8.0), {3, 10});
  Var w = constant(testing::to_tensor(testing::random_vec(10, 7), {10}));
  EXPECT_TRUE(testing::all_close(testing::to_vec(rms_norm(constant(x8), w, 0.0f)->value),
                                 testing::to_vec(rms_norm(constant(x), w, 0.0f)->value),
                                 tol::kForwardAbs, tol::kForwardRel));
}

TEST(LayerNorm, ConstantRowGivesTheBias) {
  Tensor x = Tensor::zeros({2, 5});
  x.fill(3.25f);
  Tensor b = testing::to_tensor(testing::random_vec(5, 8), {5});
  Var y = layer_norm(constant(x), constant(testing::to_tensor(testing::random_vec(5, 9), {5})),
                     constant(b), 1e-5f);
  const std::vector<float> out = y->value.to_vector(), bias = b.to_vector();
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], bias[i % 5]);
}

}  // namespace
}  // namespace peft
