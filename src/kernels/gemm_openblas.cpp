#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>

#include "core/error.h"
#include "kernels/cpu_features.h"
#include "kernels/gemm_backends.h"

extern "C" char* openblas_get_config(void);
extern "C" char* openblas_get_corename(void);

namespace peft::gemm_detail {
namespace {

// A product smaller than this runs on one thread: below it the fork/join and the duplicated
// packing of the shared operand cost more than the second thread gains.
constexpr double kSplitMinFlops = 4e6;
// Split points are multiples of this, so every thread's block keeps whole SIMD-width columns.
constexpr int64_t kSplitAlign = 16;

}  // namespace

void openblas_use_one_thread() {
  openblas_set_num_threads(1);
}

std::string openblas_config() {
  const std::string core = openblas_get_corename();
  std::string text = std::string(openblas_get_config()) + " (core " + core + ")";
  // OpenBLAS 0.3.21 falls back to its SSE3 kernels on CPUs it does not recognise (this Xeon
  // shows up as Prescott): about 5x slower than its AVX-512 kernels here.
  const bool sse_only = core == "Prescott" || core == "Core2" || core == "Penryn" ||
                        core == "Dunnington" || core == "Nehalem" || core == "Atom";
  if (sse_only && simd_level_supported() != SimdLevel::Generic)
    text += std::string("; CPU not recognised, OPENBLAS_CORETYPE=") +
            (simd_level_supported() == SimdLevel::Avx512 ? "SkylakeX" : "Haswell") +
            " selects its vector kernels";
  return text;
}

void openblas_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                   int64_t ldc) {
  PEFT_CHECK(std::max({M, N, K, lda, ldb, ldc}) < INT_MAX, "OpenBLAS takes 32-bit sizes");
  static const bool one_thread = (openblas_use_one_thread(), true);
  (void)one_thread;
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  auto run = [&](int64_t m, int64_t n, const float* a, const float* b, float* c) {
    cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(K), alpha, a, int(lda), b, int(ldb),
                beta, c, int(ldc));
  };
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool split_n = N >= M;  // each thread re-packs the operand it shares: keep it the smaller
  const int64_t extent = split_n ? N : M;
  int parts = int(std::min<int64_t>(threads, extent / kSplitAlign));
  if (2.0 * double(M) * double(N) * double(K) < kSplitMinFlops) parts = 1;
  if (parts <= 1) {
    run(M, N, A, B, C);
    return;
  }
  const int64_t chunk = (extent + parts - 1) / parts;
  const int64_t step = (chunk + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int p = 0; p < parts; ++p) {
    const int64_t begin = p * step, end = std::min(extent, begin + step);
    if (begin >= end) continue;
    if (split_n) {  // columns [begin, end) of op(B) and C
      run(M, end - begin, A, trans_b ? B + begin * ldb : B + begin, C + begin);
    } else {  // rows [begin, end) of op(A) and C
      run(end - begin, N, trans_a ? A + begin : A + begin * lda, B, C + begin * ldc);
    }
  }
}

}  // namespace peft::gemm_detail
