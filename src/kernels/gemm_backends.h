// The GEMM backends behind gemm.h's dispatch (internal to kernels/). Same conventions as gemm.h:
// row-major, C[M, N] = alpha · op(A) · op(B) + beta · C, ld* are row strides in elements, and
// beta == 0 means C is written without being read. Callers have handled M, N or K == 0.
#pragma once

#include <cstdint>
#include <string>

namespace peft::gemm_detail {

// oneDNN's f32 GEMM (dnnl_sgemm: its JIT GEMM on the OpenMP threads, no primitive to create).
void onednn_gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc);
// oneDNN bf16 matmul: A and B bf16 (raw bits), C f32, f32 accumulation. Primitives are cached
// per (shape, strides, transposes, alpha, beta, threads).
void onednn_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                      float* C, int64_t ldc);
// Whether oneDNN runs bf16 matmul natively here (its effective ISA includes AVX512-BF16).
bool onednn_has_native_bf16();
std::string onednn_version();
std::string onednn_isa_name();
size_t onednn_cached_primitives();

// OpenBLAS sgemm. OpenBLAS's own pthread pool is kept at one thread; large products are split
// along M or N over our OpenMP threads, each calling single-threaded sgemm (one thread pool).
void openblas_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                   int64_t ldc);
std::string openblas_config();  // e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... (core SkylakeX)"
// Sets OpenBLAS's own pool to one thread (idempotent; also called by set_num_threads).
void openblas_use_one_thread();

}  // namespace peft::gemm_detail
