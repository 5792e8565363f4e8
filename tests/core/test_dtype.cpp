#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/dtype.h"
#include "core/tensor.h"
#include "testing.h"

namespace peft {
namespace {

TEST(DType, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to the even one (1).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-2.5f)), -2.5f);
}

TEST(DType, F16RoundTripsEveryHalfValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << "h=" << h;
  }
}

TEST(DType, F16RoundsAndSaturates) {
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + 1.0f / 2048)), 1.0f);  // tie to even
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(70000.0f))));
  EXPECT_EQ(f16_to_f32(f32_to_f16(65504.0f)), 65504.0f);
  EXPECT_EQ(f16_to_f32(f32_to_f16(5.9604645e-08f)), 5.9604645e-08f);  // smallest subnormal
}

void expect_quant_round_trip(DType t, double bound) {
  for (int64_t n : {32, 96, 4096}) {
    Tensor x = testing::to_tensor(testing::random_vec(size_t(n), uint64_t(n), 3.0), {n});
    x.data<float>()[0] = 0;  // include an exact zero and a constant block edge case below
    Tensor q = x.to(t);
    EXPECT_EQ(q.nbytes(), dtype_bytes(t, n));
    Tensor back = q.to(DType::F32);
    for (int64_t b = 0; b < n / kQuantBlock; ++b) {
      double amax = 0;
      for (int j = 0; j < kQuantBlock; ++j)
        amax = std::max(amax, double(std::fabs(x.data<float>()[b * 32 + j])));
      for (int j = 0; j < kQuantBlock; ++j) {
        const int64_t i = b * 32 + j;
        ASSERT_LE(std::fabs(back.data<float>()[i] - x.data<float>()[i]), bound * amax)
            << dtype_name(t) << " i=" << i;
      }
    }
  }
  Tensor zeros = Tensor::zeros({64});
  EXPECT_EQ(zeros.to(t).to(DType::F32).to_vector(), std::vector<float>(64, 0.0f));
}

TEST(DType, Q8_0RoundTripWithinHalfAStep) {
  expect_quant_round_trip(DType::Q8_0, tol::kQ8RoundTrip);
}
TEST(DType, Q4_0RoundTripWithinOneStep) {
  expect_quant_round_trip(DType::Q4_0, tol::kQ4RoundTrip);
}

TEST(DType, NamesParseBothWays) {
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::I32, DType::Q8_0, DType::Q4_0})
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_THROW(dtype_from_name("F64"), Error);
}

}  // namespace
}  // namespace peft
