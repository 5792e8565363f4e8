// Products of a few activation rows with a frozen weight in a compact type (bf16, f16, q8_0,
// q4_0): a decoding step (one row per sequence) and any other x·Wᵀ with M ≤ kGemvMaxRows. Such a
// product is bound by reading W, so each weight row is converted once into a small f32 row that
// stays in cache and dotted with every x row: W is read once, in its stored size. The panel path
// (gemm.cpp) would write and re-read an f32 copy of W as well — five times the memory traffic of
// a bf16 weight, for 2·M FLOPs per element.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace peft {

inline constexpr int64_t kGemvMaxRows = 4;

// y[m, j] = Σ_k x[m, k] · W[j, k] + beta · y[m, j] for m < M (≤ kGemvMaxRows), j < N, k < K;
// W is row-major [N, K] stored as `type` (K whole blocks for q8_0 / q4_0); x and y have row
// strides ldx and ldy. beta == 0 writes y without reading it. Parallel over the rows of W.
void gemv_x_wt(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, DType type,
               const void* W, float beta, float* y, int64_t ldy);

// Σ_k a[k] · b[k] at the current SIMD level (exposed for the tests that compare the levels).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace peft
