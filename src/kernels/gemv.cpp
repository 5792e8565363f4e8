#include "kernels/gemv.h"

// GCC 12 reports its own _mm512_undefined_* placeholders inside the AVX-512 intrinsics as
// "(may be) used uninitialized" (GCC bug 105593); the warning is located in the header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <vector>

#include "core/error.h"
#include "kernels/convert.h"
#include "kernels/cpu_features.h"

namespace peft {
namespace {

// Below this many weight elements the product runs on the calling thread.
constexpr int64_t kParallelMinElements = int64_t(1) << 16;

float dot_generic(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  const __m256 s = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float r = _mm_cvtss_f32(h);
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}

__attribute__((target("avx512f,avx2,fma"))) float dot_avx512(const float* a, const float* b,
                                                             int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  if (i + 16 <= n) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    i += 16;
  }
  if (i < n) {  // the tail, masked
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

using DotFn = float (*)(const float*, const float*, int64_t);

DotFn dot_kernel() {
  switch (simd_level()) {
    case SimdLevel::Avx512:
      return dot_avx512;
    case SimdLevel::Avx2:
      return dot_avx2;
    case SimdLevel::Generic:
      break;
  }
  return dot_generic;
}

}  // namespace

float dot_f32(const float* a, const float* b, int64_t n) {
  return dot_kernel()(a, b, n);
}

void gemv_x_wt(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, DType type,
               const void* W, float beta, float* y, int64_t ldy) {
  PEFT_CHECK(M >= 0 && M <= kGemvMaxRows && N >= 0 && K >= 0 && ldx >= K && ldy >= N,
             "gemv {}x{}x{} with ldx {} ldy {}", M, N, K, ldx, ldy);
  PEFT_CHECK(!dtype_is_quantized(type) || K % kQuantBlock == 0,
             "{} weight rows of {} elements are not whole blocks", dtype_name(type), K);
  if (M == 0 || N == 0) return;
  const DotFn dot = dot_kernel();
  const char* base = static_cast<const char*>(W);
  const size_t row_bytes = dtype_bytes(type, K);
#pragma omp parallel if (N * K >= kParallelMinElements)
  {
    thread_local std::vector<float> row;
    if (row.size() < size_t(K)) row.resize(size_t(K));
#pragma omp for schedule(static)
    for (int64_t j = 0; j < N; ++j) {
      convert_run_to_f32(type, base + size_t(j) * row_bytes, row.data(), K);
      for (int64_t m = 0; m < M; ++m) {
        const float v = dot(x + m * ldx, row.data(), K);
        float& out = y[m * ldy + j];
        out = beta == 0.0f ? v : v + beta * out;
      }
    }
  }
}

}  // namespace peft
