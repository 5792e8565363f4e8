// The vectorised conversions on the GEMM paths: every SIMD level the CPU supports gives the same
// bits as the scalar conversions of core/dtype.h, including ties, infinities, NaN and denormals.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/convert.h"
#include "kernels/cpu_features.h"
#include "simd_levels.h"
#include "testing.h"

namespace peft {
namespace {

using testing::SimdLevelGuard;
using testing::supported_levels;

// 101 values (not a multiple of any vector width) with the special cases at the front.
std::vector<float> tricky_values() {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {0.0f,
                          -0.0f,
                          inf,
                          -inf,
                          std::nanf(""),
                          -std::nanf(""),
                          std::numeric_limits<float>::denorm_min(),
                          -1e-40f,
                          std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max()};
  for (uint32_t bits : {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x7f7f8000u, 0x7f7fffffu}) {
    float f;  // ties to even both ways, just below a tie, rounding up to infinity
    std::memcpy(&f, &bits, 4);
    v.push_back(f);
    v.push_back(-f);
  }
  const testing::Vec r = testing::random_vec(101 - v.size(), 9, 3.0);
  v.insert(v.end(), r.begin(), r.end());
  return v;
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

TEST(Convert, F32ToBf16MatchesScalarBitsAtEverySimdLevel) {
  SimdLevelGuard guard;
  const std::vector<float> v = tricky_values();
  for (SimdLevel level : supported_levels()) {
    set_simd_level(level);
    std::vector<uint16_t> got(v.size());
    convert_run_f32_to_bf16(v.data(), got.data(), int64_t(v.size()));
    for (size_t i = 0; i < v.size(); ++i)
      ASSERT_EQ(got[i], f32_to_bf16(v[i])) << simd_level_name(level) << " value " << v[i];
  }
}

TEST(Convert, F32ToBf16BlockHonoursStrides) {
  const std::vector<float> v = tricky_values();  // read as 3 rows of 30 with stride 33
  std::vector<uint16_t> got(3 * 31, 0xdead);
  f32_to_bf16_block(v.data(), 33, 3, 30, got.data(), 31);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 30; ++c)
      ASSERT_EQ(got[size_t(r * 31 + c)], f32_to_bf16(v[size_t(r * 33 + c)]));
    ASSERT_EQ(got[size_t(r * 31 + 30)], 0xdead);
  }
}

// Each weight dtype's storage for the tricky values (quantised: of finite random values, as
// quantisation of inf / NaN is not defined) converted back by every level equals the scalar
// convert_to_f32 bit for bit (NaN: any NaN).
TEST(Convert, WeightDtypesToF32MatchScalarBitsAtEverySimdLevel) {
  SimdLevelGuard guard;
  const std::vector<float> tricky = tricky_values();
  const testing::Vec finite = testing::random_vec(32 * 7, 4, 2.0);
  for (DType t : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0}) {
    std::vector<float> src =
        dtype_is_quantized(t) ? std::vector<float>(finite.begin(), finite.end()) : tricky;
    const int64_t n = int64_t(src.size());
    std::vector<uint8_t> stored(dtype_bytes(t, n));
    convert_from_f32(t, src.data(), stored.data(), n);
    std::vector<float> want(size_t(n), 0.0f);
    convert_to_f32(t, stored.data(), want.data(), n);
    for (SimdLevel level : supported_levels()) {
      set_simd_level(level);
      std::vector<float> got(size_t(n), -1.0f);
      convert_run_to_f32(t, stored.data(), got.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(want[size_t(i)])) {
          ASSERT_TRUE(std::isnan(got[size_t(i)])) << dtype_name(t) << " [" << i << "]";
        } else {
          ASSERT_EQ(bits_of(got[size_t(i)]), bits_of(want[size_t(i)]))
              << dtype_name(t) << " " << simd_level_name(level) << " [" << i << "]";
        }
      }
    }
  }
}

// A panel of rows [r0, r0 + rows) and block-aligned columns [c0, c0 + cols) lands at dst with
// stride ldd and equals the same slice of the whole weight's conversion.
TEST(Convert, WeightPanelIsTheMatchingSliceOfTheWholeConversion) {
  const int64_t out = 9, in = 128;
  const testing::Vec w = testing::random_vec(size_t(out * in), 8);
  const std::vector<float> wf(w.begin(), w.end());
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0}) {
    std::vector<uint8_t> stored(dtype_bytes(t, out * in));
    convert_from_f32(t, wf.data(), stored.data(), out * in);
    std::vector<float> whole(size_t(out * in));
    convert_to_f32(t, stored.data(), whole.data(), out * in);
    const int64_t r0 = 2, rows = 5, c0 = 32, cols = 64, ldd = 70;
    std::vector<float> panel(size_t(rows * ldd), -7.0f);
    weight_panel_to_f32(t, stored.data(), in, r0, rows, c0, cols, panel.data(), ldd);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_EQ(panel[size_t(r * ldd + c)], whole[size_t((r0 + r) * in + c0 + c)])
            << dtype_name(t);
      ASSERT_EQ(panel[size_t(r * ldd + cols)], -7.0f);
    }
  }
  std::vector<float> dst(64);
  std::vector<uint8_t> q(dtype_bytes(DType::Q8_0, 128));
  EXPECT_THROW(weight_panel_to_f32(DType::Q8_0, q.data(), 128, 0, 1, 16, 32, dst.data(), 32),
               InternalError);
}

TEST(CpuFeatures, Avx512LevelImpliesAvx2AndFeatureStringListsIt) {
  const CpuFeatures& f = cpu_features();
  if (simd_level_supported() == SimdLevel::Avx512) {
    EXPECT_TRUE(f.avx2 && f.avx512f);
  }
  if (f.avx2) {
    EXPECT_NE(cpu_features_str().find("avx2"), std::string::npos);
  }
  EXPECT_THROW(set_simd_level(SimdLevel(int(simd_level_supported()) + 1)), InternalError);
}

}  // namespace
}  // namespace peft
