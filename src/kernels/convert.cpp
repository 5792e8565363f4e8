#include "kernels/convert.h"

// GCC 12 reports its own _mm512_undefined_* placeholders inside the AVX-512 intrinsics as
// "may be used uninitialized" (GCC bug 105593); the warning is located in the header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstring>

#include "core/error.h"
#include "kernels/cpu_features.h"

namespace peft {
namespace {

#define PEFT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define PEFT_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

// Below this many elements a conversion runs on the calling thread (a parallel region costs a
// few microseconds).
constexpr int64_t kParallelMinElements = int64_t(1) << 15;

// ---- generic (scalar; the compiler may still vectorise for the baseline ISA) ----

void bf16_to_f32_generic(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}
void f16_to_f32_generic(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]);
}
void q8_0_to_f32_generic(const BlockQ8_0* b, float* d, int64_t nblocks) {
  convert_to_f32(DType::Q8_0, b, d, nblocks * kQuantBlock);
}
void q4_0_to_f32_generic(const BlockQ4_0* b, float* d, int64_t nblocks) {
  convert_to_f32(DType::Q4_0, b, d, nblocks * kQuantBlock);
}
void f32_to_bf16_generic(const float* s, uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}

// ---- AVX2 + F16C ----

PEFT_TARGET_AVX2 void bf16_to_f32_avx2(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    _mm256_storeu_ps(d + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
  }
  for (; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}

PEFT_TARGET_AVX2 void f16_to_f32_avx2(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = f16_to_f32(s[i]);
}

PEFT_TARGET_AVX2 void q8_0_to_f32_avx2(const BlockQ8_0* b, float* d, int64_t nblocks) {
  for (int64_t k = 0; k < nblocks; ++k, d += kQuantBlock) {
    const __m256 scale = _mm256_set1_ps(_cvtsh_ss(b[k].d));
    for (int j = 0; j < 4; ++j) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[k].qs + 8 * j));
      _mm256_storeu_ps(d + 8 * j,
                       _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    }
  }
}

// q4_0: byte j holds element j (low nibble) and element j + 16 (high nibble), each biased by 8.
PEFT_TARGET_AVX2 void q4_0_to_f32_avx2(const BlockQ4_0* b, float* d, int64_t nblocks) {
  const __m256i low = _mm256_set1_epi32(0xf), eight = _mm256_set1_epi32(8);
  for (int64_t k = 0; k < nblocks; ++k, d += kQuantBlock) {
    const __m256 scale = _mm256_set1_ps(_cvtsh_ss(b[k].d));
    for (int j = 0; j < 2; ++j) {
      const __m256i w =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[k].qs + 8 * j)));
      const __m256i lo = _mm256_sub_epi32(_mm256_and_si256(w, low), eight);
      const __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(w, 4), eight);
      _mm256_storeu_ps(d + 8 * j, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(lo)));
      _mm256_storeu_ps(d + 16 + 8 * j, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(hi)));
    }
  }
}

// Round to nearest even on the bit pattern, NaN quietened (f32_to_bf16, eight lanes).
PEFT_TARGET_AVX2 inline __m256i bf16_round_avx2(__m256i bits) {
  const __m256i abs = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
  const __m256i high = _mm256_srli_epi32(bits, 16);
  const __m256i lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(
      _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}

PEFT_TARGET_AVX2 void f32_to_bf16_avx2(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a = bf16_round_avx2(_mm256_castps_si256(_mm256_loadu_ps(s + i)));
    const __m256i b = bf16_round_avx2(_mm256_castps_si256(_mm256_loadu_ps(s + i + 8)));
    // packus interleaves 128-bit lanes (a0 b0 a1 b1); the permute restores a0 a1 b0 b1.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), packed);
  }
  for (; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}

// ---- AVX-512 (F, BW, VL) ----

PEFT_TARGET_AVX512 void bf16_to_f32_avx512(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i v =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
  }
  bf16_to_f32_avx2(s + i, d + i, n - i);
}

PEFT_TARGET_AVX512 void f16_to_f32_avx512(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(d + i,
                     _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
  f16_to_f32_avx2(s + i, d + i, n - i);
}

PEFT_TARGET_AVX512 void q8_0_to_f32_avx512(const BlockQ8_0* b, float* d, int64_t nblocks) {
  for (int64_t k = 0; k < nblocks; ++k, d += kQuantBlock) {
    const __m512 scale = _mm512_set1_ps(_cvtsh_ss(b[k].d));
    for (int j = 0; j < 2; ++j) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[k].qs + 16 * j));
      _mm512_storeu_ps(d + 16 * j,
                       _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
    }
  }
}

PEFT_TARGET_AVX512 void q4_0_to_f32_avx512(const BlockQ4_0* b, float* d, int64_t nblocks) {
  const __m512i low = _mm512_set1_epi32(0xf), eight = _mm512_set1_epi32(8);
  for (int64_t k = 0; k < nblocks; ++k, d += kQuantBlock) {
    const __m512 scale = _mm512_set1_ps(_cvtsh_ss(b[k].d));
    const __m512i w =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[k].qs)));
    const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(w, low), eight);
    const __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(w, 4), eight);
    _mm512_storeu_ps(d, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(lo)));
    _mm512_storeu_ps(d + 16, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(hi)));
  }
}

PEFT_TARGET_AVX512 void f32_to_bf16_avx512(const float* s, uint16_t* d, int64_t n) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i quiet_bit = _mm512_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i bits = _mm512_castps_si512(_mm512_loadu_ps(s + i));
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, abs_mask), inf);
    const __m512i high = _mm512_srli_epi32(bits, 16);
    const __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(bits, bias), _mm512_and_si512(high, one)), 16);
    const __m512i out = _mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(high, quiet_bit));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtepi32_epi16(out));
  }
  f32_to_bf16_avx2(s + i, d + i, n - i);
}

struct Kernels {
  void (*bf16_to_f32)(const uint16_t*, float*, int64_t);
  void (*f16_to_f32)(const uint16_t*, float*, int64_t);
  void (*q8_0_to_f32)(const BlockQ8_0*, float*, int64_t);
  void (*q4_0_to_f32)(const BlockQ4_0*, float*, int64_t);
  void (*f32_to_bf16)(const float*, uint16_t*, int64_t);
};

const Kernels& kernels() {
  static constexpr Kernels generic{bf16_to_f32_generic, f16_to_f32_generic, q8_0_to_f32_generic,
                                   q4_0_to_f32_generic, f32_to_bf16_generic};
  static constexpr Kernels avx2{bf16_to_f32_avx2, f16_to_f32_avx2, q8_0_to_f32_avx2,
                                q4_0_to_f32_avx2, f32_to_bf16_avx2};
  static constexpr Kernels avx512{bf16_to_f32_avx512, f16_to_f32_avx512, q8_0_to_f32_avx512,
                                  q4_0_to_f32_avx512, f32_to_bf16_avx512};
  switch (simd_level()) {
    case SimdLevel::Avx512:
      return avx512;
    case SimdLevel::Avx2:
      return avx2;
    case SimdLevel::Generic:
      break;
  }
  return generic;
}

}  // namespace

void convert_run_to_f32(DType type, const void* src, float* dst, int64_t n) {
  const Kernels& k = kernels();
  switch (type) {
    case DType::F32:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      return;
    case DType::BF16:
      k.bf16_to_f32(static_cast<const uint16_t*>(src), dst, n);
      return;
    case DType::F16:
      k.f16_to_f32(static_cast<const uint16_t*>(src), dst, n);
      return;
    case DType::Q8_0:
      PEFT_CHECK(n % kQuantBlock == 0, "q8_0 run of {} elements is not whole blocks", n);
      k.q8_0_to_f32(static_cast<const BlockQ8_0*>(src), dst, n / kQuantBlock);
      return;
    case DType::Q4_0:
      PEFT_CHECK(n % kQuantBlock == 0, "q4_0 run of {} elements is not whole blocks", n);
      k.q4_0_to_f32(static_cast<const BlockQ4_0*>(src), dst, n / kQuantBlock);
      return;
    case DType::I32:
      break;
  }
  PEFT_CHECK(false, "no f32 conversion kernel for {}", dtype_name(type));
}

void convert_run_f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  kernels().f32_to_bf16(src, dst, n);
}

void weight_panel_to_f32(DType type, const void* W, int64_t in, int64_t r0, int64_t rows,
                         int64_t c0, int64_t cols, float* dst, int64_t ldd) {
  PEFT_CHECK(c0 >= 0 && cols >= 0 && c0 + cols <= in && ldd >= cols, "panel columns [{}, {}) of {}",
             c0, c0 + cols, in);
  PEFT_CHECK(!dtype_is_quantized(type) || (c0 % kQuantBlock == 0 && cols % kQuantBlock == 0),
             "{} panel columns [{}, {}) are not whole blocks", dtype_name(type), c0, c0 + cols);
  const char* base = static_cast<const char*>(W);
  const size_t row_bytes = dtype_bytes(type, in);
  const size_t col_bytes = dtype_bytes(type, c0);
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r)
    convert_run_to_f32(type, base + size_t(r0 + r) * row_bytes + col_bytes, dst + r * ldd, cols);
}

void f32_to_bf16_block(const float* src, int64_t lds, int64_t rows, int64_t cols, uint16_t* dst,
                       int64_t ldd) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) convert_run_f32_to_bf16(src + r * lds, dst + r * ldd, cols);
}

}  // namespace peft
