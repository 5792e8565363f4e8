// GEMM dispatch. Every matrix product in peft.cpp goes through these functions, so the backend
// (oneDNN, OpenBLAS, or the simple reference) is chosen in one place.
// Row-major throughout: C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C, where op(X) is X
// or Xᵀ and ld* are row strides in elements. beta == 0 writes C without reading it (NaN or
// garbage in C does not propagate), as in BLAS.
//
// Backend choice (static, from bench/gemm.cpp's measurements; see gemm.cpp): oneDNN for f32;
// bf16 weights use oneDNN's bf16 matmul only where the CPU runs it fast (see Bf16Path).
// Overrides, read once at first use:
//   PEFT_GEMM=onednn|openblas|reference   the backend for every product
//   PEFT_GEMM_BF16=native|f32             bf16 weights: oneDNN bf16 matmul wherever the CPU has
//                                         AVX512-BF16 (native), or f32 panels (f32)
// `peft info --system` prints what is in use and why.
//
// Threads: one OpenMP pool serves everything. oneDNN runs on it; OpenBLAS's own pool is held at
// one thread and large OpenBLAS products are split over the OpenMP threads instead.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace peft {

enum class GemmBackend { Reference, OpenBLAS, OneDNN };

const char* gemm_backend_name(GemmBackend b);
// "onednn", "openblas" or "reference"; throws Error naming the accepted values otherwise.
GemmBackend gemm_backend_from_name(std::string_view name);
GemmBackend gemm_backend();
void set_gemm_backend(GemmBackend b);

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc);

// Naive triple loop with f64 accumulation: the oracle for the fast paths.
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc);

// How products with a bf16 operand B run.
//   Native:    oneDNN bf16 matmul: A is rounded to bf16 (nearest even), the exact bf16 products
//              accumulate in f32, C is f32. Needs AVX512-BF16 and the oneDNN backend.
//   F32Panels: B is converted to f32 a panel at a time and multiplied by the f32 backend (A is
//              not rounded).
// Automatic choice: Native only where it is supported and measured faster: at first use a
// frozen-base-sized product (128x1024x1024) is timed on both paths on one core (in that thread's
// CPU time, so other load does not sway it), and Native is taken when it runs >= 1.2x as fast
// as F32Panels (gemm_bf16_native_speedup()). An AMD EPYC with AVX512-BF16 measured 2.2x, a Xeon
// with AMX about 3.5x (issue 13's bench_gemm); an Emerald Rapids without AMX, where VDPBF16PS
// runs at half the f32 FLOP rate, about 0.6x, so it keeps F32Panels.
enum class Bf16Path { Native, F32Panels };
const char* bf16_path_name(Bf16Path p);
// Whether the CPU (and oneDNN's ISA limit) allow the native path.
bool gemm_bf16_native_supported();
Bf16Path gemm_bf16_path();
// F32Panels time / Native time of the probe product above, measured once at the first call; 0 where
// Native is unsupported.
double gemm_bf16_native_speedup();
// Auto: the measured choice above; Native: native wherever supported (F32Panels elsewhere);
// F32Panels: always the fallback (what a CPU without AVX512-BF16 runs).
enum class Bf16Mode { Auto, Native, F32Panels };
void set_gemm_bf16_mode(Bf16Mode mode);

// C[M, N] = alpha · op(A) · op(B) + beta · C with A f32 and B bf16 (raw bits), by gemm_bf16_path().
void gemm_f32_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                   float* C, int64_t ldc);

// Products with a linear layer's weight W [out, in] stored as f32, bf16, f16, q8_0 or q4_0.
// bf16 uses gemm_bf16_path(); f16, q8_0 and q4_0 (and bf16 on the fallback) are converted to f32
// in panels of W's rows (x·Wᵀ) or columns (dy·W), in parallel, so the f32 copy of a whole weight
// never exists. x·Wᵀ with at most kGemvMaxRows rows through any of them but f32 (a decoding step)
// reads W once instead (kernels/gemv.h).
// y[M, out] = x[M, in] · Wᵀ + beta · y
void matmul_x_wt(const float* x, int64_t M, const Tensor& W, float* y, float beta);
// dx[M, in] = dy[M, out] · W + beta · dx
void matmul_dy_w(const float* dy, int64_t M, const Tensor& W, float* dx, float beta);

// Width (in weight rows for x·Wᵀ, columns for dy·W) of the f32 panels, a multiple of 32; 0 (the
// default) sizes them from the weight's width. A panel holds at most about max_elements f32
// values (0: the default, 4 MiB), so dy·W through a very deep weight (a vocabulary-sized head)
// is also cut along `out`, accumulating. Tests set small values to cross panel boundaries.
void set_gemm_panel_width(int64_t width, int64_t max_elements = 0);
int64_t gemm_panel_width(int64_t depth);  // the width used for a panel depth (in or out)

// What `peft info --system` prints about the CPU and the GEMM choices, as (key, value) rows.
std::vector<std::pair<std::string, std::string>> gemm_system_info();

}  // namespace peft
