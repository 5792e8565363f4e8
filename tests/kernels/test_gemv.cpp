// The few-row product through compact weights (kernels/gemv.h): at every SIMD level the CPU
// supports, for each weight type, equal to the product with the weight's dequantised f32 values
// (summed in double) within f32 reduction rounding; beta == 0 ignores NaN in y; the parallel path
// gives the same result; matmul_x_wt takes it for M ≤ kGemvMaxRows.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "kernels/cpu_features.h"
#include "kernels/gemm.h"
#include "kernels/gemv.h"
#include "simd_levels.h"
#include "testing.h"
#include "tolerances.h"

namespace peft {
namespace {

using testing::SimdLevelGuard;
using testing::supported_levels;

// y_ref[m, j] = Σ_k x[m, k] · wf[j, k] (double) + beta · y[m, j]
std::vector<float> reference(int64_t M, int64_t N, int64_t K, const std::vector<float>& x,
                             const Tensor& wf, float beta, const std::vector<float>& y) {
  std::vector<float> out(y.size());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(x[m * K + k]) * wf.data<float>()[j * K + k];
      out[m * N + j] = float(s + (beta == 0.0f ? 0.0 : double(beta) * y[m * N + j]));
    }
  return out;
}

TEST(Gemv, DotMatchesDoubleSumAtEveryLevel) {
  SimdLevelGuard guard;
  for (SimdLevel l : supported_levels()) {
    set_simd_level(l);
    for (int64_t n : {0, 1, 7, 15, 16, 17, 31, 32, 33, 64, 100, 1000}) {
      const testing::Vec a = testing::random_vec(size_t(n), 1 + uint64_t(n));
      const testing::Vec b = testing::random_vec(size_t(n), 2 + uint64_t(n));
      std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.end());
      double ref = 0;
      for (int64_t i = 0; i < n; ++i) ref += double(af[size_t(i)]) * bf[size_t(i)];
      EXPECT_NEAR(
          dot_f32(af.data(), bf.data(), n), ref,
          tol::kReductionAbs * std::sqrt(double(n) + 1) + tol::kReductionRel * std::abs(ref))
          << simd_level_name(l) << " n " << n;
    }
  }
}

TEST(Gemv, MatchesDequantisedProductForEveryTypeAndLevel) {
  SimdLevelGuard guard;
  for (SimdLevel l : supported_levels()) {
    set_simd_level(l);
    for (DType t : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0})
      for (int64_t K : {32, 33, 101, 544}) {
        if (dtype_is_quantized(t) && K % kQuantBlock != 0) continue;
        for (int64_t M = 1; M <= kGemvMaxRows; ++M)
          for (int64_t N : {1, 17, 70})
            for (float beta : {0.0f, 0.5f}) {
              const Tensor w =
                  testing::to_tensor(testing::random_vec(size_t(N * K), uint64_t(N + K)), {N, K})
                      .to(t);
              const Tensor wf = w.to(DType::F32);
              const testing::Vec xv = testing::random_vec(size_t(M * K), uint64_t(M * K));
              const std::vector<float> x(xv.begin(), xv.end());
              std::vector<float> y(size_t(M * N), beta == 0.0f ? std::nanf("") : 0.25f);
              const std::vector<float> ref = reference(M, N, K, x, wf, beta, y);
              gemv_x_wt(M, N, K, x.data(), K, t, w.raw(), beta, y.data(), N);
              ASSERT_TRUE(testing::all_close(testing::Vec(y.begin(), y.end()),
                                             testing::Vec(ref.begin(), ref.end()),
                                             tol::kReductionAbs * 10, tol::kReductionRel))
                  << simd_level_name(l) << " " << dtype_name(t) << " " << M << "x" << N << "x" << K
                  << " beta " << beta;
            }
      }
  }
}

// Two threads over the rows of a weight large enough for the parallel path; and matmul_x_wt
// sends M ≤ kGemvMaxRows here (bitwise the same result as the direct call).
TEST(Gemv, ParallelPathAndMatmulDispatchGiveTheSameProduct) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  const int64_t N = 300, K = 256, M = 2;
  const Tensor w =
      testing::to_tensor(testing::random_vec(size_t(N * K), 5), {N, K}).to(DType::BF16);
  const testing::Vec xv = testing::random_vec(size_t(M * K), 6);
  const std::vector<float> x(xv.begin(), xv.end());
  std::vector<float> y(size_t(M * N)), y_direct(size_t(M * N));
  std::vector<float> serial(size_t(M * N));
  matmul_x_wt(x.data(), M, w, y.data(), 0.0f);
  gemv_x_wt(M, N, K, x.data(), K, DType::BF16, w.raw(), 0.0f, y_direct.data(), N);
  omp_set_num_threads(1);
  gemv_x_wt(M, N, K, x.data(), K, DType::BF16, w.raw(), 0.0f, serial.data(), N);
  omp_set_num_threads(saved);
  EXPECT_EQ(y, y_direct);
  EXPECT_EQ(y, serial);  // each output is one row's dot product, whichever thread computes it
  const std::vector<float> ref = reference(M, N, K, x, w.to(DType::F32), 0.0f, y);
  EXPECT_TRUE(testing::all_close(testing::Vec(y.begin(), y.end()),
                                 testing::Vec(ref.begin(), ref.end()), tol::kReductionAbs * 10,
                                 tol::kReductionRel));
}

}  // namespace
}  // namespace peft
