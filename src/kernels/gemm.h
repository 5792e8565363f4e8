// GEMM dispatch. Every matrix product in peft.cpp goes through these functions, so the backend
// (oneDNN, OpenBLAS, or the simple reference) is chosen in one place.
// Row-major throughout: C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C, where op(X) is X
// or Xᵀ and ld* are row strides in elements.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace peft {

enum class GemmBackend { Reference, OpenBLAS, OneDNN };

const char* gemm_backend_name(GemmBackend b);
GemmBackend gemm_backend();
void set_gemm_backend(GemmBackend b);

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc);

// Naive triple loop with f64 accumulation: the oracle for the fast paths.
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc);

// Products with a linear layer's weight W [out, in] stored as f32, bf16, f16, q8_0 or q4_0.
// y[M, out] = x[M, in] · Wᵀ + beta · y
void matmul_x_wt(const float* x, int64_t M, const Tensor& W, float* y, float beta);
// dx[M, in] = dy[M, out] · W + beta · dx
void matmul_dy_w(const float* dy, int64_t M, const Tensor& W, float* dx, float beta);

}  // namespace peft
