#include "core/dtype.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace peft {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
    case DType::I32:
      return "i32";
    case DType::Q8_0:
      return "q8_0";
    case DType::Q4_0:
      return "q4_0";
  }
  return "?";
}

DType dtype_from_name(std::string_view name) {
  if (name == "f32" || name == "F32" || name == "float32") return DType::F32;
  if (name == "bf16" || name == "BF16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "F16" || name == "float16") return DType::F16;
  if (name == "i32" || name == "I32" || name == "int32") return DType::I32;
  if (name == "q8_0") return DType::Q8_0;
  if (name == "q4_0") return DType::Q4_0;
  fail("unknown dtype \"{}\" (expected f32, bf16, f16, i32, q8_0 or q4_0)", name);
}

bool dtype_is_quantized(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0;
}

size_t dtype_bytes(DType t, int64_t n) {
  switch (t) {
    case DType::F32:
    case DType::I32:
      return size_t(n) * 4;
    case DType::BF16:
    case DType::F16:
      return size_t(n) * 2;
    case DType::Q8_0:
      PEFT_CHECK(n % kQuantBlock == 0, "q8_0 needs a multiple of 32 elements, got {}", n);
      return size_t(n / kQuantBlock) * sizeof(BlockQ8_0);
    case DType::Q4_0:
      PEFT_CHECK(n % kQuantBlock == 0, "q4_0 needs a multiple of 32 elements, got {}", n);
      return size_t(n / kQuantBlock) * sizeof(BlockQ4_0);
  }
  return 0;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant · 2^-24
      float f = std::ldexp(float(mant), -24);
      std::memcpy(&bits, &f, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                       // below the smallest normal 2^-14: subnormal
    // value / 2^-24 rounded to nearest even
    float a;
    std::memcpy(&a, &abs, 4);
    float scaled = a * 16777216.0f;  // exact: power of two
    uint32_t m = uint32_t(std::nearbyint(scaled));
    return sign | uint16_t(m);
  }
  uint32_t e = (abs >> 23) - 112;
  uint32_t m = abs & 0x7fffff;
  uint32_t h = (e << 10) | (m >> 13);
  uint32_t rest = m & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h += 1;  // may carry into the exponent: fine
  return sign | uint16_t(h);
}

namespace {

void quantize_q8_0(const float* x, BlockQ8_0* out, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b) {
    const float* v = x + b * kQuantBlock;
    float amax = 0;
    for (int j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    const float inv = d != 0 ? 1.0f / d : 0.0f;
    out[b].d = f32_to_f16(d);
    for (int j = 0; j < kQuantBlock; ++j) out[b].qs[j] = int8_t(std::lrintf(v[j] * inv));
  }
}

void dequantize_q8_0(const BlockQ8_0* in, float* x, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b) {
    const float d = f16_to_f32(in[b].d);
    for (int j = 0; j < kQuantBlock; ++j) x[b * kQuantBlock + j] = d * float(in[b].qs[j]);
  }
}

// The scale maps the element of largest magnitude to −8 exactly, so its sign decides which end
// of the asymmetric range [−8, 7] is used.
void quantize_q4_0(const float* x, BlockQ4_0* out, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b) {
    const float* v = x + b * kQuantBlock;
    float amax = 0, extreme = 0;
    for (int j = 0; j < kQuantBlock; ++j) {
      if (std::fabs(v[j]) > amax) {
        amax = std::fabs(v[j]);
        extreme = v[j];
      }
    }
    const float d = extreme / -8.0f;
    const float inv = d != 0 ? 1.0f / d : 0.0f;
    out[b].d = f32_to_f16(d);
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      auto q = [&](float value) {
        int r = int(std::lrintf(value * inv)) + 8;
        return uint8_t(std::clamp(r, 0, 15));
      };
      out[b].qs[j] = uint8_t(q(v[j]) | (q(v[j + kQuantBlock / 2]) << 4));
    }
  }
}

void dequantize_q4_0(const BlockQ4_0* in, float* x, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; ++b) {
    const float d = f16_to_f32(in[b].d);
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      x[b * kQuantBlock + j] = d * float(int(in[b].qs[j] & 0xf) - 8);
      x[b * kQuantBlock + j + kQuantBlock / 2] = d * float(int(in[b].qs[j] >> 4) - 8);
    }
  }
}

}  // namespace

void convert_to_f32(DType src_type, const void* src, float* dst, int64_t n) {
  switch (src_type) {
    case DType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case DType::BF16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::I32: {
      auto* s = static_cast<const int32_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = float(s[i]);
      return;
    }
    case DType::Q8_0:
      dequantize_q8_0(static_cast<const BlockQ8_0*>(src), dst,
                      int64_t(dtype_bytes(src_type, n) / sizeof(BlockQ8_0)));
      return;
    case DType::Q4_0:
      dequantize_q4_0(static_cast<const BlockQ4_0*>(src), dst,
                      int64_t(dtype_bytes(src_type, n) / sizeof(BlockQ4_0)));
      return;
  }
}

void convert_from_f32(DType dst_type, const float* src, void* dst, int64_t n) {
  switch (dst_type) {
    case DType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::I32: {
      auto* d = static_cast<int32_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = int32_t(src[i]);
      return;
    }
    case DType::Q8_0:
      quantize_q8_0(src, static_cast<BlockQ8_0*>(dst),
                    int64_t(dtype_bytes(dst_type, n) / sizeof(BlockQ8_0)));
      return;
    case DType::Q4_0:
      quantize_q4_0(src, static_cast<BlockQ4_0*>(dst),
                    int64_t(dtype_bytes(dst_type, n) / sizeof(BlockQ4_0)));
      return;
  }
}

}  // namespace peft
