#include "kernels/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

namespace peft {
namespace {
GemmBackend g_backend = GemmBackend::OpenBLAS;
}

const char* gemm_backend_name(GemmBackend b) {
  switch (b) {
    case GemmBackend::Reference: return "reference";
    case GemmBackend::OpenBLAS: return "openblas";
    case GemmBackend::OneDNN: return "onednn";
  }
  return "?";
}

GemmBackend gemm_backend() { return g_backend; }
void set_gemm_backend(GemmBackend b) { g_backend = b; }

void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                    int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const double b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      float& c = C[i * ldc + j];
      c = float(alpha * acc + (beta == 0.0f ? 0.0 : double(beta) * c));
    }
  }
}

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (g_backend == GemmBackend::Reference) {
    gemm_reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// Stored-smaller weights are converted to f32 a panel of rows at a time, so the f32 copy of a
// whole weight never exists.
namespace {
constexpr int64_t kPanelRows = 256;
}

void matmul_x_wt(const float* x, int64_t M, const Tensor& W, float* y, float beta) {
  PEFT_CHECK(W.ndim() == 2, "weight must be 2-d, got {}", W.describe());
  const int64_t out = W.dim(0), in = W.dim(1);
  if (W.dtype() == DType::F32) {
    gemm_f32(false, true, M, out, in, 1.0f, x, in, W.data<float>(), in, beta, y, out);
    return;
  }
  std::vector<float> panel(size_t(std::min(kPanelRows, out) * in));
  for (int64_t r0 = 0; r0 < out; r0 += kPanelRows) {
    const int64_t rows = std::min(kPanelRows, out - r0);
    Tensor slice = W.slice_rows(r0, r0 + rows);
    convert_to_f32(W.dtype(), slice.raw(), panel.data(), rows * in);
    gemm_f32(false, true, M, rows, in, 1.0f, x, in, panel.data(), in, beta, y + r0, out);
  }
}

void matmul_dy_w(const float* dy, int64_t M, const Tensor& W, float* dx, float beta) {
  PEFT_CHECK(W.ndim() == 2, "weight must be 2-d, got {}", W.describe());
  const int64_t out = W.dim(0), in = W.dim(1);
  if (W.dtype() == DType::F32) {
    gemm_f32(false, false, M, in, out, 1.0f, dy, out, W.data<float>(), in, beta, dx, in);
    return;
  }
  std::vector<float> panel(size_t(std::min(kPanelRows, out) * in));
  for (int64_t r0 = 0; r0 < out; r0 += kPanelRows) {
    const int64_t rows = std::min(kPanelRows, out - r0);
    Tensor slice = W.slice_rows(r0, r0 + rows);
    convert_to_f32(W.dtype(), slice.raw(), panel.data(), rows * in);
    gemm_f32(false, false, M, in, rows, 1.0f, dy + r0, out, panel.data(), in,
             r0 == 0 ? beta : 1.0f, dx, in);
  }
}

}  // namespace peft
