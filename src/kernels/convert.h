// Bulk conversions on the GEMM paths, vectorised for AVX2 / AVX-512 with run-time dispatch
// (simd_level()) and parallel over rows with OpenMP (serial when called inside a parallel region).
// Every variant gives bit-identical results to the scalar conversions in core/dtype.h.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace peft {

// dst[r, c] (row stride ldd) = f32 value of W[r0 + r, c0 + c] for r < rows, c < cols, where W is a
// row-major weight of `in` columns stored as f32, bf16, f16, q8_0 or q4_0. Quantised types need
// c0 and cols to be multiples of 32 (whole blocks).
void weight_panel_to_f32(DType type, const void* W, int64_t in, int64_t r0, int64_t rows,
                         int64_t c0, int64_t cols, float* dst, int64_t ldd);

// dst[r, c] (row stride ldd) = bf16(src[r, c]) (row stride lds), rounding to nearest even like
// f32_to_bf16.
void f32_to_bf16_block(const float* src, int64_t lds, int64_t rows, int64_t cols, uint16_t* dst,
                       int64_t ldd);

// One contiguous run of n elements at the current SIMD level (the building blocks above; exposed
// for the tests that compare every level with the scalar code).
void convert_run_to_f32(DType type, const void* src, float* dst, int64_t n);
void convert_run_f32_to_bf16(const float* src, uint16_t* dst, int64_t n);

}  // namespace peft
