#include <gtest/gtest.h>

#include "op_check.h"
#include "ops/embedding.h"

namespace peft {
namespace {
using testing::Vec;
using testing::Vecs;

struct EmbeddingCase {
  int64_t V, C;
  std::vector<int32_t> ids;
  Shape ids_shape;
};
void PrintTo(const EmbeddingCase& c, std::ostream* os) {
  *os << "table [" << c.V << ", " << c.C << "], ids " << shape_str(c.ids_shape);
}

class EmbeddingTest : public ::testing::TestWithParam<EmbeddingCase> {};

TEST_P(EmbeddingTest, MatchesF64ReferenceAndScatterAddsGradient) {
  const EmbeddingCase c = GetParam();
  const Tensor ids = Tensor::from_vector_i32(c.ids, c.ids_shape);
  auto ref = [&](const Vecs& v) {  // y[i, :] = table[ids[i], :]
    Vec y;
    for (int32_t id : c.ids)
      y.insert(y.end(), v[0].begin() + id * c.C, v[0].begin() + (id + 1) * c.C);
    return y;
  };
  testing::check_op(
      {{{c.V, c.C}}}, [&](const auto& x) { return embedding(x[0], ids); }, ref, 0.0, 0.0);
}

// Repeated ids make the backward a true scatter-add (several rows into one table row).
INSTANTIATE_TEST_SUITE_P(OddShapes, EmbeddingTest,
                         ::testing::Values(EmbeddingCase{1, 1, {0}, {1}},
                                           EmbeddingCase{7, 5, {3, 0, 6, 3, 3}, {5}},
                                           EmbeddingCase{13, 17, {12, 1, 1, 0, 5, 12}, {2, 3}},
                                           EmbeddingCase{31, 33, {30, 2, 2}, {1, 3}}));

TEST(Embedding, OutputShapeIsIdsShapePlusHidden) {
  Var y = embedding(constant(Tensor::zeros({5, 3})),
                    Tensor::from_vector_i32({0, 1, 2, 3, 4, 0}, {2, 3}));
  EXPECT_EQ(y->value.shape(), (Shape{2, 3, 3}));
}

TEST(Embedding, OutOfRangeIdFailsNamingIt) {
  Var table = constant(Tensor::zeros({10, 4}));
  for (int32_t bad : {10, 11, -1}) {
    try {
      embedding(table, Tensor::from_vector_i32({1, bad, 2}, {3}));
      ADD_FAILURE() << "id " << bad << " was accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("token id " + std::to_string(bad) + " at position 1"), std::string::npos)
          << msg;
      EXPECT_NE(msg.find("[0, 10)"), std::string::npos) << msg;
      EXPECT_EQ(dynamic_cast<const InternalError*>(&e), nullptr)
          << "a data error, not an invariant";
    }
  }
}

TEST(Embedding, FrozenSmallerTablesGatherTheirF32Values) {
  const int64_t V = 9, C = 64;  // C a multiple of 32 so that q8_0 / q4_0 rows are whole blocks
  Tensor table = testing::to_tensor(testing::random_vec(size_t(V * C), 4), {V, C});
  const Tensor ids = Tensor::from_vector_i32({8, 0, 4, 4}, {4});
  for (DType t : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0}) {
    Tensor stored = table.to(t);
    Tape tape;
    Var w = constant(stored);
    Var y = embedding(w, ids);
    Var y32 = embedding(constant(stored.to(DType::F32)), ids);
    EXPECT_EQ(y->value.to_vector(), y32->value.to_vector()) << dtype_name(t);
    EXPECT_FALSE(y->requires_grad);
    EXPECT_EQ(tape.size(), 0u);
  }
}

TEST(Embedding, OnlyTheTableRowsThatWereUsedGetGradient) {
  Var table = variable(testing::to_tensor(testing::random_vec(6 * 3, 5), {6, 3}));
  Tape tape;
  Var y = embedding(table, Tensor::from_vector_i32({4, 1, 4}, {3}));
  tape.backward(y, testing::to_tensor(Vec(9, 1.0), {3, 3}));
  const std::vector<float> g = table->grad.to_vector();
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t j = 0; j < 3; ++j)
      EXPECT_EQ(g[size_t(r * 3 + j)], r == 4 ? 2.0f : r == 1 ? 1.0f : 0.0f);
}

}  // namespace
}  // namespace peft
