// Element types. f32 / bf16 / f16 / i32 are plain arrays; q8_0 and q4_0 are block-quantised
// (32 values per block, one f16 scale d per block) and are used only for frozen weights:
//   q8_0: x_i ≈ d · q_i, q_i ∈ [-127, 127], d = max|x| / 127            (34 bytes a block)
//   q4_0: x_i ≈ d · (q_i − 8), q_i ∈ [0, 15], d = x_maxabs_signed / −8  (18 bytes a block)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace peft {

enum class DType : uint8_t { F32, BF16, F16, I32, Q8_0, Q4_0 };

constexpr int64_t kQuantBlock = 32;

struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[kQuantBlock];
};
struct BlockQ4_0 {
  uint16_t d;                   // f16 scale
  uint8_t qs[kQuantBlock / 2];  // element j in the low nibble of qs[j], j+16 in the high nibble
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18);

const char* dtype_name(DType t);
// Parses our names ("f32", "bf16", "f16", "i32", "q8_0", "q4_0") and safetensors' ("F32", "BF16",
// "F16", "I32"); throws Error for anything else.
DType dtype_from_name(std::string_view name);
bool dtype_is_quantized(DType t);
// Bytes that n consecutive elements occupy (n must be a multiple of 32 for quantised types).
size_t dtype_bytes(DType t, int64_t n);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, NaN stays NaN (quietened).
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow to inf

// Element-wise conversions between f32 and any type (quantised: n a multiple of 32).
void convert_to_f32(DType src_type, const void* src, float* dst, int64_t n);
void convert_from_f32(DType dst_type, const float* src, void* dst, int64_t n);

}  // namespace peft
