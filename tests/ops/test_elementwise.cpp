#include <gtest/gtest.h>

#include "op_check.h"
#include "ops/elementwise.h"

namespace peft {
namespace {
using testing::check_op;
using testing::OpInput;
using testing::Vec;
using testing::Vecs;

// y = a ∘ b with b repeated over a's leading elements (b's numel divides a's).
Vec broadcast_ref(const Vecs& v, bool multiply) {
  const Vec &a = v[0], &b = v[1];
  Vec y(a.size());
  for (size_t i = 0; i < a.size(); ++i)
    y[i] = multiply ? a[i] * b[i % b.size()] : a[i] + b[i % b.size()];
  return y;
}

struct BroadcastCase {
  Shape a, b;
};
void PrintTo(const BroadcastCase& c, std::ostream* os) {
  *os << shape_str(c.a) << " with " << shape_str(c.b);
}

class BroadcastTest : public ::testing::TestWithParam<BroadcastCase> {};

TEST_P(BroadcastTest, AddMatchesF64Reference) {
  const BroadcastCase c = GetParam();
  check_op(
      {{c.a}, {c.b}}, [](const auto& x) { return add(x[0], x[1]); },
      [](const Vecs& v) { return broadcast_ref(v, false); }, tol::kForwardAbs, tol::kForwardRel);
}

TEST_P(BroadcastTest, MulMatchesF64Reference) {
  const BroadcastCase c = GetParam();
  check_op(
      {{c.a}, {c.b}}, [](const auto& x) { return mul(x[0], x[1]); },
      [](const Vecs& v) { return broadcast_ref(v, true); }, tol::kForwardAbs, tol::kForwardRel);
}

TEST_P(BroadcastTest, FrozenSecondOperandGetsNoGradient) {
  const BroadcastCase c = GetParam();
  check_op(
      {{c.a}, {c.b, false}}, [](const auto& x) { return mul(x[0], x[1]); },
      [](const Vecs& v) { return broadcast_ref(v, true); }, tol::kForwardAbs, tol::kForwardRel);
}

INSTANTIATE_TEST_SUITE_P(Shapes, BroadcastTest,
                         ::testing::Values(BroadcastCase{{1}, {1}}, BroadcastCase{{3, 5}, {3, 5}},
                                           BroadcastCase{{2, 3, 7}, {7}},        // bias
                                           BroadcastCase{{4, 5, 3}, {1, 5, 3}},  // prefix
                                           BroadcastCase{{2, 13}, {1}}));        // scalar

TEST(Add, RejectsShapesThatDoNotBroadcast) {
  EXPECT_FALSE(broadcasts_over({2, 3}, {2}));
  EXPECT_FALSE(broadcasts_over({3}, {2, 3}));
  EXPECT_TRUE(broadcasts_over({4, 2, 3}, {1, 1, 3}));
  EXPECT_THROW(add(constant(Tensor::zeros({2, 3})), constant(Tensor::zeros({2}))), Error);
}

TEST(Scale, MatchesF64Reference) {
  check_op(
      {{{3, 11}}}, [](const auto& x) { return scale(x[0], -0.375f); },
      [](const Vecs& v) {
        Vec y = v[0];
        for (double& e : y) e *= -0.375;
        return y;
      },
      tol::kForwardAbs, tol::kForwardRel);
}

// [outer, len, inner] index helpers for the shape-op references.
int64_t prod(const Shape& s, size_t b, size_t e) {
  int64_t n = 1;
  for (size_t i = b; i < e; ++i) n *= s[i];
  return n;
}

struct ConcatCase {
  std::vector<Shape> parts;
  int dim;
};
void PrintTo(const ConcatCase& c, std::ostream* os) {
  for (const Shape& s : c.parts) *os << shape_str(s) << " ";
  *os << "along " << c.dim;
}

class ConcatTest : public ::testing::TestWithParam<ConcatCase> {};

TEST_P(ConcatTest, MatchesF64ReferenceAndSplitsGradients) {
  const ConcatCase c = GetParam();
  std::vector<OpInput> inputs;
  for (size_t i = 0; i < c.parts.size(); ++i) inputs.push_back({c.parts[i], i != 1});  // one frozen
  const int nd = int(c.parts[0].size());
  const size_t d = size_t(c.dim < 0 ? c.dim + nd : c.dim);
  const int64_t outer = prod(c.parts[0], 0, d), inner = prod(c.parts[0], d + 1, size_t(nd));
  auto ref = [&](const Vecs& v) {
    Vec y;
    for (int64_t o = 0; o < outer; ++o)
      for (size_t p = 0; p < v.size(); ++p) {
        const int64_t block = c.parts[p][d] * inner;
        y.insert(y.end(), v[p].begin() + o * block, v[p].begin() + (o + 1) * block);
      }
    return y;
  };
  check_op(
      inputs, [&](const auto& x) { return concat(x, c.dim); }, ref, 0.0, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Dims, ConcatTest,
                         ::testing::Values(ConcatCase{{{1}, {1}}, 0},
                                           ConcatCase{{{2, 3}, {5, 3}, {1, 3}}, 0},
                                           ConcatCase{{{2, 3, 5}, {2, 1, 5}, {2, 7, 5}}, 1},
                                           ConcatCase{{{3, 2, 1}, {3, 2, 4}, {3, 2, 3}}, -1}));

struct SliceCase {
  Shape shape;
  int dim;
  int64_t begin, end;
};
void PrintTo(const SliceCase& c, std::ostream* os) {
  *os << shape_str(c.shape) << " dim " << c.dim << " [" << c.begin << ", " << c.end << ")";
}

class SliceTest : public ::testing::TestWithParam<SliceCase> {};

TEST_P(SliceTest, MatchesF64ReferenceAndScattersGradient) {
  const SliceCase c = GetParam();
  const int nd = int(c.shape.size());
  const size_t d = size_t(c.dim < 0 ? c.dim + nd : c.dim);
  const int64_t outer = prod(c.shape, 0, d), inner = prod(c.shape, d + 1, size_t(nd)),
                len = c.shape[d];
  auto ref = [&](const Vecs& v) {
    Vec y;
    for (int64_t o = 0; o < outer; ++o)
      y.insert(y.end(), v[0].begin() + (o * len + c.begin) * inner,
               v[0].begin() + (o * len + c.end) * inner);
    return y;
  };
  check_op(
      {{c.shape}}, [&](const auto& x) { return slice(x[0], c.dim, c.begin, c.end); }, ref, 0.0,
      0.0);
}

INSTANTIATE_TEST_SUITE_P(Dims, SliceTest,
                         ::testing::Values(SliceCase{{1}, 0, 0, 1}, SliceCase{{7, 3}, 0, 2, 5},
                                           SliceCase{{2, 11, 3}, 1, 4, 11},
                                           SliceCase{{3, 2, 13}, -1, 0, 5},
                                           SliceCase{{5, 3}, 1, 1, 1}));

TEST(Slice, RejectsOutOfRangeWindow) {
  EXPECT_THROW(slice(constant(Tensor::zeros({2, 3})), 1, 2, 4), Error);
}

struct TransposeCase {
  Shape shape;
  int d0, d1;
};
void PrintTo(const TransposeCase& c, std::ostream* os) {
  *os << shape_str(c.shape) << " dims " << c.d0 << ", " << c.d1;
}

class TransposeTest : public ::testing::TestWithParam<TransposeCase> {};

TEST_P(TransposeTest, MatchesF64ReferenceAndTransposesGradient) {
  const TransposeCase c = GetParam();
  const int nd = int(c.shape.size());
  const size_t a = size_t(c.d0 < 0 ? c.d0 + nd : c.d0), b = size_t(c.d1 < 0 ? c.d1 + nd : c.d1);
  auto ref = [&](const Vecs& v) {  // y[idx with a, b swapped] = x[idx], by explicit multi-index
    Shape out = c.shape;
    std::swap(out[a], out[b]);
    Vec y(v[0].size());
    std::vector<int64_t> idx(size_t(nd), 0);
    for (size_t flat = 0; flat < v[0].size(); ++flat) {
      std::vector<int64_t> o = idx;
      std::swap(o[a], o[b]);
      int64_t pos = 0;
      for (size_t k = 0; k < size_t(nd); ++k) pos = pos * out[k] + o[k];
      y[size_t(pos)] = v[0][flat];
      for (int k = nd - 1; k >= 0 && ++idx[size_t(k)] == c.shape[size_t(k)]; --k)
        idx[size_t(k)] = 0;
    }
    return y;
  };
  check_op(
      {{c.shape}}, [&](const auto& x) { return transpose(x[0], c.d0, c.d1); }, ref, 0.0, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Dims, TransposeTest,
                         ::testing::Values(TransposeCase{{1, 1}, 0, 1}, TransposeCase{{3, 7}, 0, 1},
                                           TransposeCase{{2, 3, 5}, 0, 2},
                                           TransposeCase{{2, 3, 5, 7}, 1, 2},
                                           TransposeCase{{3, 1, 5, 2}, -1, 0}));

TEST(Reshape, SharesStorageAndPassesGradientThrough) {
  Var x = variable(testing::to_tensor(testing::random_vec(30, 3), {2, 3, 5}));
  Tape tape;
  Var y = reshape(x, {6, -1});
  EXPECT_EQ(y->value.shape(), (Shape{6, 5}));
  EXPECT_EQ(y->value.raw(), x->value.raw());
  const Vec g = testing::random_vec(30, 4);
  tape.backward(y, testing::to_tensor(g, {6, 5}));
  EXPECT_TRUE(testing::all_close(testing::to_vec(x->grad), testing::round_to_f32(g), 0.0, 0.0));
}

TEST(Sum, MatchesF64Reference) {
  auto total = [](const Vecs& v, double w) {
    double s = 0;
    for (double e : v[0]) s += e;
    return Vec{w * s};
  };
  check_op(
      {{{7, 13}}}, [](const auto& x) { return sum(x[0]); },
      [&](const Vecs& v) { return total(v, 1.0); }, tol::kReductionAbs, tol::kReductionRel);
  check_op(
      {{{7, 13}}}, [](const auto& x) { return mean(x[0]); },
      [&](const Vecs& v) { return total(v, 1.0 / 91); }, tol::kReductionAbs, tol::kReductionRel);
}

TEST(Sum, BackwardFromScalarLoss) {
  Var x = variable(testing::to_tensor(testing::random_vec(5, 1), {5}));
  Tape tape;
  Var loss = mean(scale(x, 2.0f));
  EXPECT_EQ(loss->value.ndim(), 0);
  tape.backward(loss);
  for (float g : x->grad.to_vector()) EXPECT_FLOAT_EQ(g, 0.4f);
}

}  // namespace
}  // namespace peft
