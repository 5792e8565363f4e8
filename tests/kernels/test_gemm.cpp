// GEMM dispatch: every backend against gemm_reference (the f64 oracle) on odd shapes, every
// transpose combination, alpha/beta, padded leading dimensions; the bf16 path (native and the
// forced fallback); products with bf16 / f16 / q8_0 / q4_0 weights against their f32 values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/threads.h"
#include "kernels/cpu_features.h"
#include "kernels/gemm.h"
#include "kernels/gemm_backends.h"
#include "testing.h"

namespace peft {
namespace {

using testing::Vec;

constexpr int64_t kOddSizes[] = {1, 3, 17, 64, 129};
constexpr float kAlpha = 0.75f, kBeta = -0.5f;
constexpr int64_t kPad = 3;            // leading dimensions exceed the row width by this much
constexpr float kUntouched = 1234.5f;  // C's padding must keep this value

// Restores the process-wide GEMM settings a test changes.
class GemmSettingsGuard {
 public:
  GemmSettingsGuard() : backend_(gemm_backend()), threads_(num_threads()) {}
  ~GemmSettingsGuard() {
    set_gemm_backend(backend_);
    set_gemm_bf16_mode(Bf16Mode::Auto);
    set_gemm_panel_width(0);
    set_num_threads(threads_);
  }

 private:
  GemmBackend backend_;
  int threads_;
};

// rows × cols values in [-1, 1] stored with row stride ld; the padding holds NaN, so a backend
// that reads outside the matrix poisons its result.
std::vector<float> padded_matrix(int64_t rows, int64_t cols, int64_t ld, uint64_t seed) {
  const Vec v = testing::random_vec(size_t(rows * cols), seed);
  std::vector<float> m(size_t(rows * ld), std::numeric_limits<float>::quiet_NaN());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m[size_t(r * ld + c)] = float(v[size_t(r * cols + c)]);
  return m;
}

Vec block(const std::vector<float>& m, int64_t rows, int64_t cols, int64_t ld) {
  Vec out;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out.push_back(m[size_t(r * ld + c)]);
  return out;
}

std::vector<float> round_to_bf16(std::vector<float> v) {
  for (float& x : v)
    if (!std::isnan(x)) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

std::vector<uint16_t> to_bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

struct Problem {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  std::vector<float> A, B, C;
};

Problem make_problem(bool ta, bool tb, int64_t M, int64_t N, int64_t K, uint64_t seed) {
  Problem p{ta, tb, M, N, K, (ta ? M : K) + kPad, (tb ? K : N) + kPad, N + kPad, {}, {}, {}};
  p.A = padded_matrix(ta ? K : M, ta ? M : K, p.lda, seed);
  p.B = padded_matrix(tb ? N : K, tb ? K : N, p.ldb, seed + 1);
  p.C = padded_matrix(M, N, p.ldc, seed + 2);
  for (int64_t r = 0; r < M; ++r)
    for (int64_t c = N; c < p.ldc; ++c) p.C[size_t(r * p.ldc + c)] = kUntouched;
  return p;
}

std::vector<float> reference_result(const Problem& p, const std::vector<float>& A,
                                    const std::vector<float>& B, float beta) {
  std::vector<float> C = p.C;
  gemm_reference(p.ta, p.tb, p.M, p.N, p.K, kAlpha, A.data(), p.lda, B.data(), p.ldb, beta,
                 C.data(), p.ldc);
  return C;
}

::testing::AssertionResult padding_untouched(const Problem& p, const std::vector<float>& C) {
  for (int64_t r = 0; r < p.M; ++r)
    for (int64_t c = p.N; c < p.ldc; ++c)
      if (C[size_t(r * p.ldc + c)] != kUntouched)
        return ::testing::AssertionFailure() << "C padding written at [" << r << ", " << c << "]";
  return ::testing::AssertionSuccess();
}

std::string case_name(const Problem& p) {
  return std::to_string(p.M) + "x" + std::to_string(p.N) + "x" + std::to_string(p.K) + " trans " +
         std::to_string(p.ta) + std::to_string(p.tb);
}

const GemmBackend kBackends[] = {GemmBackend::Reference, GemmBackend::OpenBLAS,
                                 GemmBackend::OneDNN};

struct BackendCase {
  GemmBackend backend;
  bool ta, tb;
};

std::string backend_case_name(const ::testing::TestParamInfo<BackendCase>& info) {
  return std::string(gemm_backend_name(info.param.backend)) + (info.param.ta ? "_T" : "_N") +
         (info.param.tb ? "T" : "N");
}

std::vector<BackendCase> all_backend_cases() {
  std::vector<BackendCase> cases;
  for (GemmBackend b : kBackends)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) cases.push_back({b, ta, tb});
  return cases;
}

class GemmBackendTest : public ::testing::TestWithParam<BackendCase> {
 protected:
  GemmSettingsGuard guard_;
};

TEST_P(GemmBackendTest, F32MatchesReferenceOnOddShapesWithPaddedStridesAlphaBeta) {
  const BackendCase bc = GetParam();
  set_gemm_backend(bc.backend);
  for (int64_t M : kOddSizes)
    for (int64_t N : kOddSizes)
      for (int64_t K : kOddSizes) {
        Problem p = make_problem(bc.ta, bc.tb, M, N, K, uint64_t(M * 10000 + N * 100 + K));
        const std::vector<float> ref = reference_result(p, p.A, p.B, kBeta);
        gemm_f32(p.ta, p.tb, M, N, K, kAlpha, p.A.data(), p.lda, p.B.data(), p.ldb, kBeta,
                 p.C.data(), p.ldc);
        ASSERT_TRUE(testing::all_close(block(p.C, M, N, p.ldc), block(ref, M, N, p.ldc),
                                       tol::kReductionAbs, tol::kReductionRel))
            << case_name(p);
        ASSERT_TRUE(padding_untouched(p, p.C)) << case_name(p);
      }
}

TEST_P(GemmBackendTest, BetaZeroNeverReadsC) {
  const BackendCase bc = GetParam();
  set_gemm_backend(bc.backend);
  Problem p = make_problem(bc.ta, bc.tb, 17, 64, 129, 3);
  const std::vector<float> ref = reference_result(p, p.A, p.B, 0.0f);
  for (int64_t r = 0; r < p.M; ++r)
    for (int64_t c = 0; c < p.N; ++c) p.C[size_t(r * p.ldc + c)] = std::nanf("");
  gemm_f32(p.ta, p.tb, p.M, p.N, p.K, kAlpha, p.A.data(), p.lda, p.B.data(), p.ldb, 0.0f,
           p.C.data(), p.ldc);
  EXPECT_TRUE(testing::all_close(block(p.C, p.M, p.N, p.ldc), block(ref, p.M, p.N, p.ldc),
                                 tol::kReductionAbs, tol::kReductionRel));
}

INSTANTIATE_TEST_SUITE_P(Backends, GemmBackendTest, ::testing::ValuesIn(all_backend_cases()),
                         backend_case_name);

class GemmTest : public ::testing::Test {
 protected:
  GemmSettingsGuard guard_;
};

TEST_F(GemmTest, EmptyInnerDimensionScalesCByBeta) {
  for (GemmBackend b : kBackends) {
    set_gemm_backend(b);
    std::vector<float> C = {1, 2, 3, 4, 5, 6};
    gemm_f32(false, false, 2, 3, 0, kAlpha, nullptr, 1, nullptr, 3, kBeta, C.data(), 3);
    EXPECT_EQ(C, (std::vector<float>{-0.5f, -1, -1.5f, -2, -2.5f, -3})) << gemm_backend_name(b);
  }
}

// OpenBLAS's pool is held at one thread and big products are split over the OpenMP threads:
// the split (along N when N >= M, else along M) must cover C exactly once.
TEST_F(GemmTest, OpenBlasSplitOverTwoThreadsMatchesReference) {
  set_gemm_backend(GemmBackend::OpenBLAS);
  set_num_threads(2);
  for (auto [M, N] : {std::pair<int64_t, int64_t>{130, 211}, {211, 130}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        Problem p = make_problem(ta, tb, M, N, 160, 17);
        const std::vector<float> ref = reference_result(p, p.A, p.B, kBeta);
        gemm_f32(ta, tb, M, N, p.K, kAlpha, p.A.data(), p.lda, p.B.data(), p.ldb, kBeta, p.C.data(),
                 p.ldc);
        EXPECT_TRUE(testing::all_close(block(p.C, M, N, p.ldc), block(ref, M, N, p.ldc),
                                       tol::kReductionAbs, tol::kReductionRel))
            << case_name(p);
        EXPECT_TRUE(padding_untouched(p, p.C)) << case_name(p);
      }
    }
  }
}

// oneDNN runs larger x·Wᵀ-shaped f32 products (no transpose on A, B transposed) through a cached
// matmul primitive instead of dnnl_sgemm: that path too honours strides, alpha and beta, and a
// repeated shape reuses its primitive.
TEST_F(GemmTest, OneDnnPrimitivePathMatchesReferenceAndIsCachedPerShape) {
  set_gemm_backend(GemmBackend::OneDNN);
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{129, 200, 160}, {8, 1000, 500}}) {
    Problem p = make_problem(false, true, M, N, K, 5);
    const std::vector<float> ref = reference_result(p, p.A, p.B, kBeta);
    const size_t before = gemm_detail::onednn_cached_primitives();
    std::vector<float> C = p.C;
    gemm_f32(false, true, M, N, K, kAlpha, p.A.data(), p.lda, p.B.data(), p.ldb, kBeta, C.data(),
             p.ldc);
    EXPECT_TRUE(testing::all_close(block(C, M, N, p.ldc), block(ref, M, N, p.ldc),
                                   tol::kReductionAbs, tol::kReductionRel))
        << case_name(p);
    EXPECT_TRUE(padding_untouched(p, C));
    const size_t cached = gemm_detail::onednn_cached_primitives();
    EXPECT_TRUE(cached == before + 1 || cached == 1) << "one new primitive (or a cache restart)";
    for (int i = 0; i < 3; ++i) {
      C = p.C;
      gemm_f32(false, true, M, N, K, kAlpha, p.A.data(), p.lda, p.B.data(), p.ldb, kBeta, C.data(),
               p.ldc);
    }
    EXPECT_EQ(gemm_detail::onednn_cached_primitives(), cached);
    EXPECT_TRUE(testing::all_close(block(C, M, N, p.ldc), block(ref, M, N, p.ldc),
                                   tol::kReductionAbs, tol::kReductionRel));
  }
}

TEST_F(GemmTest, BackendNamesRoundTripAndUnknownNameThrows) {
  for (GemmBackend b : kBackends) EXPECT_EQ(gemm_backend_from_name(gemm_backend_name(b)), b);
  EXPECT_THROW(gemm_backend_from_name("mkl"), Error);
}

TEST_F(GemmTest, PanelWidthMustBeWholeQuantBlocks) {
  EXPECT_THROW(set_gemm_panel_width(17), InternalError);
  set_gemm_panel_width(64);
  EXPECT_EQ(gemm_panel_width(1000), 64);
  set_gemm_panel_width(0);
  EXPECT_EQ(gemm_panel_width(1000) % kQuantBlock, 0);
}

TEST_F(GemmTest, SystemInfoNamesTheChosenBackends) {
  std::string keys;
  for (const auto& [key, value] : gemm_system_info()) keys += key + " ";
  for (const char* k : {"cpu_features", "gemm_f32", "gemm_bf16", "onednn", "openblas"})
    EXPECT_NE(keys.find(k), std::string::npos) << k;
}

// ---- bf16 operand B ----

// The automatic choice takes the native path exactly where the timed probe product ran clearly
// faster natively, and never where AVX512-BF16 (or oneDNN's support for it) is missing.
TEST_F(GemmTest, AutoBf16PathFollowsMeasuredGemmSpeedup) {
  set_gemm_backend(GemmBackend::OneDNN);
  set_gemm_bf16_mode(Bf16Mode::Auto);
  const double speedup = gemm_bf16_native_speedup();
  if (!gemm_bf16_native_supported()) {
    EXPECT_EQ(speedup, 0.0);
    EXPECT_EQ(gemm_bf16_path(), Bf16Path::F32Panels);
  } else {
    EXPECT_GT(speedup, 0.0);
    EXPECT_EQ(gemm_bf16_path() == Bf16Path::Native, speedup >= 1.2) << "speedup " << speedup;
  }
  set_gemm_backend(GemmBackend::OpenBLAS);
  EXPECT_EQ(gemm_bf16_path(), Bf16Path::F32Panels);
}

// Native: A is rounded to bf16 and the exact bf16 products accumulate in f32, so the result
// matches the f64 product of the rounded operands to f32 accumulation accuracy.
TEST_F(GemmTest, Bf16NativeMatchesProductOfBf16RoundedOperands) {
  if (!gemm_bf16_native_supported()) GTEST_SKIP() << "no AVX512-BF16 here";
  set_gemm_backend(GemmBackend::OneDNN);
  set_gemm_bf16_mode(Bf16Mode::Native);
  ASSERT_EQ(gemm_bf16_path(), Bf16Path::Native);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t M : kOddSizes)
        for (int64_t N : kOddSizes)
          for (int64_t K : kOddSizes) {
            Problem p = make_problem(ta, tb, M, N, K, uint64_t(7 + M * 10000 + N * 100 + K));
            const std::vector<uint16_t> b16 = to_bf16_bits(p.B);
            const std::vector<float> ref =
                reference_result(p, round_to_bf16(p.A), round_to_bf16(p.B), kBeta);
            gemm_f32_bf16(ta, tb, M, N, K, kAlpha, p.A.data(), p.lda, b16.data(), p.ldb, kBeta,
                          p.C.data(), p.ldc);
            ASSERT_TRUE(testing::all_close(block(p.C, M, N, p.ldc), block(ref, M, N, p.ldc),
                                           tol::kBf16GemmAbs, tol::kBf16GemmRel))
                << case_name(p);
            ASSERT_TRUE(padding_untouched(p, p.C)) << case_name(p);
          }
}

// Forced fallback (what a CPU without AVX512-BF16 runs): B converted to f32 panels, A unrounded,
// on every backend; small panels so that several are used.
TEST_F(GemmTest, Bf16FallbackForcedMatchesF32ProductWithUnroundedA) {
  set_gemm_bf16_mode(Bf16Mode::F32Panels);
  set_gemm_panel_width(32);
  for (GemmBackend b : kBackends) {
    set_gemm_backend(b);
    ASSERT_EQ(gemm_bf16_path(), Bf16Path::F32Panels);
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                               {3, 17, 129},
                               {17, 129, 3},
                               {64, 100, 17},
                               {129, 64, 64}}) {
          Problem p = make_problem(ta, tb, M, N, K, uint64_t(11 + M + N + K));
          const std::vector<uint16_t> b16 = to_bf16_bits(p.B);
          const std::vector<float> ref = reference_result(p, p.A, round_to_bf16(p.B), kBeta);
          gemm_f32_bf16(ta, tb, M, N, K, kAlpha, p.A.data(), p.lda, b16.data(), p.ldb, kBeta,
                        p.C.data(), p.ldc);
          ASSERT_TRUE(testing::all_close(block(p.C, M, N, p.ldc), block(ref, M, N, p.ldc),
                                         tol::kReductionAbs, tol::kReductionRel))
              << gemm_backend_name(b) << " " << case_name(p);
          ASSERT_TRUE(padding_untouched(p, p.C)) << case_name(p);
        }
  }
}

// ---- products with a stored-smaller weight W [out, in] ----

struct WeightCase {
  DType dtype;
  GemmBackend backend;
  bool native_bf16;
};

class WeightProductTest : public ::testing::TestWithParam<WeightCase> {
 protected:
  GemmSettingsGuard guard_;
};

// y = x·Wᵀ + beta·y and dx = dy·W + beta·dx equal the products with W's f32 values (for the
// native bf16 path: with x / dy rounded to bf16 too, which also shows that the backward product
// takes the native path). Panels of 32 rows / columns, so most shapes cross panel boundaries.
TEST_P(WeightProductTest, MatchesProductWithDequantisedF32Weight) {
  const WeightCase wc = GetParam();
  if (wc.native_bf16 && !gemm_bf16_native_supported()) GTEST_SKIP() << "no AVX512-BF16 here";
  set_gemm_backend(wc.backend);
  set_gemm_bf16_mode(wc.native_bf16 ? Bf16Mode::Native : Bf16Mode::F32Panels);
  set_gemm_panel_width(32, 32 * 64);  // dy·W panels also cut `out` into slices of 64
  const bool rounds_input = wc.dtype == DType::BF16 && gemm_bf16_path() == Bf16Path::Native;
  ASSERT_EQ(rounds_input, wc.native_bf16);
  const double abs = rounds_input ? tol::kBf16GemmAbs : tol::kReductionAbs;
  const double rel = rounds_input ? tol::kBf16GemmRel : tol::kReductionRel;
  const float beta = 0.5f;
  for (int64_t M : {1, 3, 17, 64})
    for (int64_t out : {1, 17, 129})
      for (int64_t in : {32, 96, 160}) {
        const std::string name =
            std::to_string(M) + "x" + std::to_string(out) + "x" + std::to_string(in);
        const Tensor w32 = testing::to_tensor(testing::random_vec(size_t(out * in), 3), {out, in});
        const Tensor w = w32.to(wc.dtype);
        const Tensor wf = w.to(DType::F32);  // the dequantised values (scalar code)
        std::vector<float> x = padded_matrix(M, in, in, uint64_t(M + out + in));
        std::vector<float> dy = padded_matrix(M, out, out, uint64_t(M * out + in));
        std::vector<float> y = padded_matrix(M, out, out, 5), dx = padded_matrix(M, in, in, 6);
        std::vector<float> y_ref = y, dx_ref = dx;
        const std::vector<float> xr = rounds_input ? round_to_bf16(x) : x;
        const std::vector<float> dyr = rounds_input ? round_to_bf16(dy) : dy;
        gemm_reference(false, true, M, out, in, 1.0f, xr.data(), in, wf.data<float>(), in, beta,
                       y_ref.data(), out);
        gemm_reference(false, false, M, in, out, 1.0f, dyr.data(), out, wf.data<float>(), in, beta,
                       dx_ref.data(), in);
        matmul_x_wt(x.data(), M, w, y.data(), beta);
        matmul_dy_w(dy.data(), M, w, dx.data(), beta);
        ASSERT_TRUE(
            testing::all_close(Vec(y.begin(), y.end()), Vec(y_ref.begin(), y_ref.end()), abs, rel))
            << "x_wt " << name;
        ASSERT_TRUE(testing::all_close(Vec(dx.begin(), dx.end()), Vec(dx_ref.begin(), dx_ref.end()),
                                       abs, rel))
            << "dy_w " << name;
      }
}

// Large products on the panel path give each thread its own block of columns (whole 32-column
// blocks, the remainder to the last thread); the result is the same product.
TEST_F(GemmTest, PanelPathSplitOverTwoThreadsMatchesDequantisedProduct) {
  set_num_threads(2);
  set_gemm_bf16_mode(Bf16Mode::F32Panels);
  const int64_t M = 32, out = 300, in = 1024;  // > 16 MFLOP: the split path
  const Tensor w32 = testing::to_tensor(testing::random_vec(size_t(out * in), 21), {out, in});
  // Activations scaled by 1/16 keep the outputs O(1) over these long reductions, as after a norm.
  std::vector<float> x = padded_matrix(M, in, in, 22), dy = padded_matrix(M, out, out, 23);
  for (float& v : x) v /= 16;
  for (float& v : dy) v /= 16;
  for (DType t : {DType::BF16, DType::Q4_0}) {
    const Tensor w = w32.to(t);
    const Tensor wf = w.to(DType::F32);
    const std::vector<float> y0(size_t(M * out), 1.0f), dx0(size_t(M * in), 1.0f);
    std::vector<float> y_ref = y0, dx_ref = dx0;
    gemm_reference(false, true, M, out, in, 1.0f, x.data(), in, wf.data<float>(), in, 0.5f,
                   y_ref.data(), out);
    gemm_reference(false, false, M, in, out, 1.0f, dy.data(), out, wf.data<float>(), in, 0.5f,
                   dx_ref.data(), in);
    for (GemmBackend b : {GemmBackend::OneDNN, GemmBackend::OpenBLAS}) {
      set_gemm_backend(b);
      std::vector<float> y = y0, dx = dx0;
      matmul_x_wt(x.data(), M, w, y.data(), 0.5f);
      matmul_dy_w(dy.data(), M, w, dx.data(), 0.5f);
      EXPECT_TRUE(testing::all_close(Vec(y.begin(), y.end()), Vec(y_ref.begin(), y_ref.end()),
                                     tol::kReductionAbs, tol::kReductionRel))
          << gemm_backend_name(b) << " " << dtype_name(t) << " x_wt";
      EXPECT_TRUE(testing::all_close(Vec(dx.begin(), dx.end()), Vec(dx_ref.begin(), dx_ref.end()),
                                     tol::kReductionAbs, tol::kReductionRel))
          << gemm_backend_name(b) << " " << dtype_name(t) << " dy_w";
    }
  }
}

std::vector<WeightCase> all_weight_cases() {
  std::vector<WeightCase> cases;
  for (DType t : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0})
    for (GemmBackend b : kBackends) cases.push_back({t, b, false});
  cases.push_back({DType::BF16, GemmBackend::OneDNN, true});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Weights, WeightProductTest, ::testing::ValuesIn(all_weight_cases()),
                         [](const ::testing::TestParamInfo<WeightCase>& info) {
                           return std::string(dtype_name(info.param.dtype)) + "_" +
                                  gemm_backend_name(info.param.backend) +
                                  (info.param.native_bf16 ? "_native" : "");
                         });

}  // namespace
}  // namespace peft
