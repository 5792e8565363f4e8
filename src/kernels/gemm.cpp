#include "kernels/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <ctime>
#include <vector>

#include "kernels/convert.h"
#include "kernels/cpu_features.h"
#include "kernels/gemm_backends.h"
#include "kernels/gemv.h"

namespace peft {
namespace {

// The default backend, a static choice from bench/gemm.cpp. On the 2-core Intel Xeon (Emerald
// Rapids, AVX-512) this was tuned on, oneDNN gives 130-145 GFLOP/s on one thread and 220-280 on
// two for the linear layer's products, and 1.4-3x OpenBLAS on the thin LoRA products even when
// OpenBLAS is told its core type; Debian's OpenBLAS 0.3.21 does not recognise this CPU at all and
// runs its SSE3 kernels (~25 GFLOP/s). oneDNN's own kernels do not depend on that detection. A
// per-process calibration was rejected: it costs start-up time, and on a loaded machine it could
// pick differently from run to run, and as backends round differently, results would stop being
// reproducible.
constexpr GemmBackend kDefaultBackend = GemmBackend::OneDNN;

// Automatic bf16 choice, by timing the product itself (not one instruction): native when
// oneDNN's bf16 matmul, activations' conversion included, runs a frozen-base-sized product at
// least this many times faster than the f32-panel path on the threads in use. One instruction's
// rate misleads both ways: on Intel Emerald Rapids without AMX VDPBF16PS runs at half the f32
// FLOP rate (panels 1.4-1.8x faster), while with AMX oneDNN never uses VDPBF16PS and bf16 is
// 3-4x f32 although the instruction probe says 0.5. The margin keeps the exact-operand f32 path
// where the two are close, and covers noise on a loaded machine.
constexpr double kNativeBf16MinSpeedup = 1.2;
// The probe's product: rows x·Wᵀ through a [kProbeN, kProbeK] bf16 weight (268 MFLOP, ~2 ms in
// f32 on one core).
constexpr int64_t kProbeM = 128, kProbeN = 1024, kProbeK = 1024;

struct EnvChoice {
  GemmBackend backend = kDefaultBackend;
  std::string backend_source = "default";
  Bf16Mode bf16 = Bf16Mode::Auto;
};

EnvChoice read_env() {
  EnvChoice c;
  if (const char* v = std::getenv("PEFT_GEMM"); v && *v) {
    const std::string_view s(v);
    if (s != "onednn" && s != "openblas" && s != "reference")
      fail("PEFT_GEMM=\"{}\" is not a GEMM backend (expected onednn, openblas or reference)", s);
    c.backend = gemm_backend_from_name(s);
    c.backend_source = "PEFT_GEMM";
  }
  if (const char* v = std::getenv("PEFT_GEMM_BF16"); v && *v) {
    const std::string_view s(v);
    if (s != "native" && s != "f32")
      fail("PEFT_GEMM_BF16=\"{}\" is not a bf16 path (expected native or f32)", s);
    c.bf16 = s == "native" ? Bf16Mode::Native : Bf16Mode::F32Panels;
    if (c.bf16 == Bf16Mode::Native && !gemm_bf16_native_supported())
      fail(
          "PEFT_GEMM_BF16=native, but this CPU (or oneDNN's ISA limit) lacks AVX512-BF16; unset "
          "it or use PEFT_GEMM_BF16=f32");
  }
  return c;
}

const EnvChoice& env_choice() {
  static const EnvChoice c = read_env();
  return c;
}

std::atomic<int> g_backend_override{-1};
std::atomic<int> g_bf16_mode_override{-1};

Bf16Mode bf16_mode() {
  const int o = g_bf16_mode_override.load(std::memory_order_relaxed);
  return o < 0 ? env_choice().bf16 : Bf16Mode(o);
}

std::atomic<int64_t> g_panel_width{0};
std::atomic<int64_t> g_panel_elements{0};

// An automatic panel holds about this many f32 values (4 MiB): wide enough that each panel's GEMM
// runs near full speed and the fork/joins per product stay few, small enough that the f32 copy
// of a large weight never exists. Writing and re-reading the panel costs 8 bytes per weight
// element against 2·M FLOPs of GEMM on it, so it is cheap for M in the hundreds.
constexpr int64_t kPanelElements = int64_t(1) << 20;
constexpr int64_t kMinPanelWidth = 64;
// Below this many FLOPs the panel path does not split its columns over the threads.
constexpr double kSplitPanelsMinFlops = 16e6;

int64_t panel_elements() {
  const int64_t e = g_panel_elements.load(std::memory_order_relaxed);
  return e > 0 ? e : kPanelElements;
}

void check_strides(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda,
                   int64_t ldb, int64_t ldc) {
  PEFT_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm sizes {}x{}x{}", M, N, K);
  PEFT_CHECK(lda >= std::max<int64_t>(1, trans_a ? M : K) &&
                 ldb >= std::max<int64_t>(1, trans_b ? K : N) && ldc >= std::max<int64_t>(1, N),
             "gemm {}x{}x{} (trans {}{}) with lda {} ldb {} ldc {}", M, N, K, int(trans_a),
             int(trans_b), lda, ldb, ldc);
}

// C = beta · C for an empty inner dimension (beta == 0 writes zeros).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

// Columns [j_begin, j_end) of C, one panel at a time, on the calling thread's panel buffer.
void panels_range(bool trans_a, bool trans_b, int64_t M, int64_t j_begin, int64_t j_end, int64_t K,
                  float alpha, const float* A, int64_t lda, DType type, const void* B, int64_t ldb,
                  float beta, float* C, int64_t ldc) {
  const int64_t width = std::min(j_end - j_begin, gemm_panel_width(K));
  // dy·W through a vocabulary-sized weight (K = out in the hundred thousands) would make even a
  // kMinPanelWidth-wide panel tens of MiB: there the panel also covers K a slice at a time,
  // accumulating into C.
  const int64_t depth = trans_b ? K : std::min(K, std::max(panel_elements() / width, width));
  thread_local std::vector<float> panel;
  if (panel.size() < size_t(width * depth)) panel.resize(size_t(width * depth));
  for (int64_t j0 = j_begin; j0 < j_end; j0 += width) {
    const int64_t n = std::min(width, j_end - j0);
    if (trans_b) {  // rows [j0, j0 + n) of B
      weight_panel_to_f32(type, B, ldb, j0, n, 0, K, panel.data(), K);
      gemm_f32(trans_a, true, M, n, K, alpha, A, lda, panel.data(), K, beta, C + j0, ldc);
      continue;
    }
    for (int64_t k0 = 0; k0 < K; k0 += depth) {  // rows [k0, k0 + kc), columns [j0, j0 + n) of B
      const int64_t kc = std::min(depth, K - k0);
      weight_panel_to_f32(type, B, ldb, k0, kc, j0, n, panel.data(), n);
      gemm_f32(trans_a, false, M, n, kc, alpha, trans_a ? A + k0 * lda : A + k0, lda, panel.data(),
               n, k0 == 0 ? beta : 1.0f, C + j0, ldc);
    }
  }
}

// C = alpha · op(A) · op(B) + beta · C with B stored as `type` (row stride ldb; whole rows for
// quantised types): op(B) = Bᵀ with B [N, K] when trans_b, else B [K, N]. N is cut into panels,
// each converted to f32 and multiplied by the f32 backend (K too, for very deep dy·W). Large
// products give each OpenMP thread its own block of columns (one fork/join per product, each
// thread's panel in its own cache); small ones run the panels one after another with the
// backend's own threading.
void gemm_f32_panels(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, DType type, const void* B, int64_t ldb,
                     float beta, float* C, int64_t ldc) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t blocks = N / kQuantBlock;  // split points stay on whole quantisation blocks
  const int parts = int(std::min<int64_t>(threads, blocks));
  if (parts <= 1 || 2.0 * double(M) * double(N) * double(K) < kSplitPanelsMinFlops)
    return panels_range(trans_a, trans_b, M, 0, N, K, alpha, A, lda, type, B, ldb, beta, C, ldc);
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int p = 0; p < parts; ++p) {
    const int64_t begin = blocks * p / parts * kQuantBlock;
    const int64_t end = p + 1 == parts ? N : blocks * (p + 1) / parts * kQuantBlock;
    panels_range(trans_a, trans_b, M, begin, end, K, alpha, A, lda, type, B, ldb, beta, C, ldc);
  }
}

void gemm_bf16_native(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) {
  const int64_t rows = trans_a ? K : M, cols = trans_a ? M : K;  // A as stored
  thread_local std::vector<uint16_t> a16;
  if (a16.size() < size_t(rows * cols)) a16.resize(size_t(rows * cols));
  f32_to_bf16_block(A, lda, rows, cols, a16.data(), cols);
  gemm_detail::onednn_gemm_bf16(trans_a, trans_b, M, N, K, alpha, a16.data(), cols, B, ldb, beta, C,
                                ldc);
}

// CPU seconds of the calling thread.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Thread CPU seconds of the fastest of a few runs of fn (after one untimed run that creates
// primitives).
template <typename Fn>
double best_time(Fn&& fn, int runs) {
  fn();
  double best = 1e30;
  for (int r = 0; r < runs; ++r) {
    const double t0 = thread_cpu_seconds();
    fn();
    best = std::min(best, thread_cpu_seconds() - t0);
  }
  return best;
}

// f32-panel time / native time of the probe product on one core. One thread, timed in that
// thread's CPU time, makes the ratio a property of the core rather than of the load: with
// several threads on a busy machine each barrier can wait a whole scheduler time slice, and
// wall-clock probes swung from 0.45x to 9x between runs on the same machine.
double measure_native_speedup() {
  std::vector<float> x(size_t(kProbeM * kProbeK)), y(size_t(kProbeM * kProbeN));
  std::vector<uint16_t> w(size_t(kProbeN * kProbeK));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i * 7919 % 2001) - 1000) * 1e-3f;
  for (size_t i = 0; i < w.size(); ++i)  // bf16 bits of values in about ±0.03
    w[i] = uint16_t(0x3c00 + i * 2654435761u % 0x100) | uint16_t(i & 1 ? 0x8000 : 0);
  auto native = [&] {
    gemm_bf16_native(false, true, kProbeM, kProbeN, kProbeK, 1.0f, x.data(), kProbeK, w.data(),
                     kProbeK, 0.0f, y.data(), kProbeN);
  };
  auto panels = [&] {
    gemm_f32_panels(false, true, kProbeM, kProbeN, kProbeK, 1.0f, x.data(), kProbeK, DType::BF16,
                    w.data(), kProbeK, 0.0f, y.data(), kProbeN);
  };
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  double t_native = 1e30, t_panels = 1e30;
  for (int round = 0; round < 2; ++round) {
    t_native = std::min(t_native, best_time(native, 2));
    t_panels = std::min(t_panels, best_time(panels, 2));
  }
  omp_set_num_threads(saved_threads);
  return t_panels / std::max(t_native, 1e-9);
}

std::string ratio_text() {
  return fmt::format("{:.2f}", gemm_bf16_native_speedup());
}

// Why gemm_bf16_path() is what it is, for `peft info --system`.
std::string bf16_path_reason() {
  const bool native = gemm_bf16_path() == Bf16Path::Native;
  const std::string who =
      g_bf16_mode_override.load() >= 0 ? "set by the program" : "PEFT_GEMM_BF16";
  if (!native) {
    if (gemm_backend() != GemmBackend::OneDNN)
      return std::string("backend is ") + gemm_backend_name(gemm_backend());
    if (!cpu_features().avx512_bf16) return "CPU lacks avx512_bf16";
    if (!gemm_bf16_native_supported())
      return "oneDNN ISA limited to " + gemm_detail::onednn_isa_name();
  }
  if (bf16_mode() != Bf16Mode::Auto) return who;
  return fmt::format(
      "measured: native bf16 runs a {}x{}x{} product {}x as fast as f32 panels, native needs "
      ">= {}x",
      kProbeM, kProbeN, kProbeK, ratio_text(), kNativeBf16MinSpeedup);
}

}  // namespace

const char* gemm_backend_name(GemmBackend b) {
  switch (b) {
    case GemmBackend::Reference:
      return "reference";
    case GemmBackend::OpenBLAS:
      return "openblas";
    case GemmBackend::OneDNN:
      return "onednn";
  }
  return "?";
}

GemmBackend gemm_backend_from_name(std::string_view name) {
  if (name == "onednn") return GemmBackend::OneDNN;
  if (name == "openblas") return GemmBackend::OpenBLAS;
  if (name == "reference") return GemmBackend::Reference;
  fail("unknown GEMM backend \"{}\" (expected onednn, openblas or reference)", name);
}

GemmBackend gemm_backend() {
  const int o = g_backend_override.load(std::memory_order_relaxed);
  return o < 0 ? env_choice().backend : GemmBackend(o);
}

void set_gemm_backend(GemmBackend b) {
  g_backend_override.store(int(b));
}

const char* bf16_path_name(Bf16Path p) {
  return p == Bf16Path::Native ? "native" : "f32-panels";
}

bool gemm_bf16_native_supported() {
  static const bool supported = cpu_features().avx512_bf16 && gemm_detail::onednn_has_native_bf16();
  return supported;
}

Bf16Path gemm_bf16_path() {
  if (gemm_backend() != GemmBackend::OneDNN || !gemm_bf16_native_supported())
    return Bf16Path::F32Panels;
  switch (bf16_mode()) {
    case Bf16Mode::Native:
      return Bf16Path::Native;
    case Bf16Mode::F32Panels:
      return Bf16Path::F32Panels;
    case Bf16Mode::Auto:
      break;
  }
  return gemm_bf16_native_speedup() >= kNativeBf16MinSpeedup ? Bf16Path::Native
                                                             : Bf16Path::F32Panels;
}

double gemm_bf16_native_speedup() {
  if (!gemm_bf16_native_supported()) return 0.0;
  static const double speedup = measure_native_speedup();
  return speedup;
}

void set_gemm_bf16_mode(Bf16Mode mode) {
  g_bf16_mode_override.store(int(mode));
}

void set_gemm_panel_width(int64_t width, int64_t max_elements) {
  PEFT_CHECK(width >= 0 && width % kQuantBlock == 0,
             "panel width {} must be 0 (automatic) or a multiple of {}", width, kQuantBlock);
  PEFT_CHECK(max_elements >= 0, "panel size {}", max_elements);
  g_panel_width.store(width);
  g_panel_elements.store(max_elements);
}

int64_t gemm_panel_width(int64_t depth) {
  const int64_t fixed = g_panel_width.load(std::memory_order_relaxed);
  if (fixed > 0) return fixed;
  const int64_t w = panel_elements() / std::max<int64_t>(depth, 1) / kQuantBlock * kQuantBlock;
  return std::max(w, kMinPanelWidth);
}

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
  check_strides(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  switch (gemm_backend()) {
    case GemmBackend::Reference:
      return gemm_reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    case GemmBackend::OpenBLAS:
      return gemm_detail::openblas_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                                        ldc);
    case GemmBackend::OneDNN:
      return gemm_detail::onednn_gemm_f32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                                          ldc);
  }
}

void gemm_f32_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                   float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  check_strides(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  if (gemm_bf16_path() == Bf16Path::Native)
    return gemm_bf16_native(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  gemm_f32_panels(trans_a, trans_b, M, N, K, alpha, A, lda, DType::BF16, B, ldb, beta, C, ldc);
}

void matmul_x_wt(const float* x, int64_t M, const Tensor& W, float* y, float beta) {
  PEFT_CHECK(W.ndim() == 2, "weight must be 2-d, got {}", W.describe());
  const int64_t out = W.dim(0), in = W.dim(1);
  switch (W.dtype()) {
    case DType::F32:
      return gemm_f32(false, true, M, out, in, 1.0f, x, in, W.data<float>(), in, beta, y, out);
    case DType::BF16:
      if (M > kGemvMaxRows)
        return gemm_f32_bf16(false, true, M, out, in, 1.0f, x, in,
                             static_cast<const uint16_t*>(W.raw()), in, beta, y, out);
      [[fallthrough]];
    case DType::F16:
    case DType::Q8_0:
    case DType::Q4_0:
      if (M == 0 || out == 0) return;
      if (in == 0) return scale_c(M, out, beta, y, out);
      if (M <= kGemvMaxRows) return gemv_x_wt(M, out, in, x, in, W.dtype(), W.raw(), beta, y, out);
      return gemm_f32_panels(false, true, M, out, in, 1.0f, x, in, W.dtype(), W.raw(), in, beta, y,
                             out);
    case DType::I32:
      break;
  }
  PEFT_CHECK(false, "no matmul for a {} weight", W.describe());
}

void matmul_dy_w(const float* dy, int64_t M, const Tensor& W, float* dx, float beta) {
  PEFT_CHECK(W.ndim() == 2, "weight must be 2-d, got {}", W.describe());
  const int64_t out = W.dim(0), in = W.dim(1);
  switch (W.dtype()) {
    case DType::F32:
      return gemm_f32(false, false, M, in, out, 1.0f, dy, out, W.data<float>(), in, beta, dx, in);
    case DType::BF16:
      return gemm_f32_bf16(false, false, M, in, out, 1.0f, dy, out,
                           static_cast<const uint16_t*>(W.raw()), in, beta, dx, in);
    case DType::F16:
    case DType::Q8_0:
    case DType::Q4_0:
      if (M == 0 || in == 0) return;
      if (out == 0) return scale_c(M, in, beta, dx, in);
      return gemm_f32_panels(false, false, M, in, out, 1.0f, dy, out, W.dtype(), W.raw(), in, beta,
                             dx, in);
    case DType::I32:
      break;
  }
  PEFT_CHECK(false, "no matmul for a {} weight", W.describe());
}

std::vector<std::pair<std::string, std::string>> gemm_system_info() {
  const std::string backend = gemm_backend_name(gemm_backend());
  const int o = g_backend_override.load();
  const std::string source = o >= 0 ? "set by the program" : env_choice().backend_source;
  const std::string bf16 =
      gemm_bf16_path() == Bf16Path::Native
          ? "native: onednn bf16 matmul, activations rounded to bf16, f32 accumulation"
          : "f32-panels: converted to f32 panels + " + backend + " f32";
  return {
      {"cpu", cpu_features().model},
      {"cpu_features", cpu_features_str()},
      {"simd_kernels", simd_level_name(simd_level())},
      {"onednn", gemm_detail::onednn_version() + ", isa " + gemm_detail::onednn_isa_name()},
      {"openblas", gemm_detail::openblas_config() + ", own pool held at 1 thread"},
      {"gemm_f32", backend + " (" + source + "; override: PEFT_GEMM=onednn|openblas|reference)"},
      {"gemm_bf16", bf16 + " (" + bf16_path_reason() + "; override: PEFT_GEMM_BF16=native|f32)"},
      {"gemm_f16_q8_0_q4_0", "converted to f32 panels + " + backend + " f32"},
  };
}

}  // namespace peft
