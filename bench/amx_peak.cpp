// bench_amx_peak: the measured peak of the CPU's matrix and vector units, and the frozen-base GEMMs
// as a share of it (issue 13, target 3). One JSON line per measurement:
//
//   bench_amx_peak [--seconds S] [--no-gemm]
//
// Peaks (register-resident operands, no memory traffic; many independent accumulators so the
// latency is hidden and the issue rate is what is measured):
//   amx_bf16     TDPBF16PS on tiles: 4 accumulator tiles (16×16 f32), 2 A and 2 B tiles (16 rows ×
//                32 bf16), 16·16·32·2 = 16384 FLOP per instruction. Needs AMX-TILE and AMX-BF16
//                (CPUID leaf 7) and the kernel's permission for the tile state
//                (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); without them one line says
//                {"unit": "amx_bf16", "available": false, "reason": ...} and the others still run.
//   avx512_bf16  VDPBF16PS zmm: 16 lanes × 2 products, 64 FLOP per instruction.
//   avx512_f32   VFMADD231PS zmm, 32 FLOP;   avx2_f32: VFMADD231PS ymm, 16 FLOP.
// Each runs on 1 thread and on one thread per core (std::thread), long enough for --seconds of
// CPU time (default 0.3), best of 3: gflops (wall clock, all threads), gflops_per_core (that /
// threads) and gflops_per_cpu_s (FLOP per second of CPU time the threads got: on a machine shared
// with other work the wall-clock rate falls, this one barely moves).
//
// GEMM rows (unless --no-gemm): the frozen-base products of bench_gemm, x·Wᵀ and dy·W for
// 512×3584×3584 and 512×896×4864, with the weight in bf16 on oneDNN's native bf16 path and in
// f32, per CPU-second, and their share of the matching peak per CPU-second (bf16: of amx_bf16
// where available, else of avx512_bf16; f32: of the widest f32 FMA), 1 thread and all cores.
// Built for x86-64 only (the file compiles to a stub printing "unavailable" elsewhere).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "kernels/gemm.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace {

using namespace peft;

double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

double round1(double v) {
  return std::round(v * 10) / 10;
}

// A kernel runs `iters` iterations on one thread and returns the FLOPs it did.
using Kernel = double (*)(int64_t iters);

#if defined(__x86_64__)

struct Support {
  bool avx2_fma = false, avx512f = false, avx512_bf16 = false;
  bool amx_cpu = false;     // AMX-TILE and AMX-BF16 in CPUID
  bool amx_os = false;      // XCR0 has the tile state
  bool amx_permit = false;  // arch_prctl granted it
  std::string amx_reason;
};

uint64_t xcr0() {
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

Support detect() {
  Support s;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return s;  // no OSXSAVE
  const bool fma = c & (1u << 12);
  const uint64_t x = xcr0();
  const bool ymm_os = (x & 0x6) == 0x6, zmm_os = (x & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return s;
  s.avx2_fma = ymm_os && fma && (b & (1u << 5));
  s.avx512f = zmm_os && (b & (1u << 16));
  s.amx_cpu = (d & (1u << 24)) && (d & (1u << 22));  // AMX-TILE, AMX-BF16
  unsigned a1 = 0, b1, c1, d1;
  if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) s.avx512_bf16 = s.avx512f && (a1 & (1u << 5));
  s.amx_os = (x & (3ull << 17)) == (3ull << 17);  // XTILECFG, XTILEDATA
  if (!s.amx_cpu) {
    s.amx_reason = "the CPU has no AMX-TILE/AMX-BF16 (CPUID leaf 7)";
  } else if (!s.amx_os) {
    s.amx_reason = "the OS does not enable the tile state (XCR0 bits 17-18)";
  } else {
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    s.amx_permit = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
    if (!s.amx_permit)
      s.amx_reason =
          std::string("arch_prctl(ARCH_REQ_XCOMP_PERM) refused: ") + std::strerror(errno);
  }
  return s;
}

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// bf16 2^-10 in every element: sums stay finite over billions of iterations.
alignas(64) uint16_t g_tile_src[16 * 32];

__attribute__((target("amx-tile,amx-bf16"))) double amx_bf16_kernel(int64_t iters) {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, g_tile_src, 64);
  _tile_loadd(5, g_tile_src, 64);
  _tile_loadd(6, g_tile_src, 64);
  _tile_loadd(7, g_tile_src, 64);
  for (int64_t i = 0; i < iters; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float out[16 * 16];
  _tile_stored(0, out, 64);
  _tile_release();
  volatile float sink = out[0];
  (void)sink;
  return double(iters) * 4 * 16 * 16 * 32 * 2;
}

constexpr int kAcc = 16;  // independent accumulators: latency × issue rate on current cores

__attribute__((target("avx512f,avx512bf16"))) double avx512_bf16_kernel(int64_t iters) {
  volatile uint32_t seed = 0x3a803a80u;  // two bf16 2^-10
  const __m512bh a = (__m512bh)_mm512_set1_epi32(int(seed));
  const __m512bh b = (__m512bh)_mm512_set1_epi32(int(seed));
  __m512 acc[kAcc];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kAcc; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  __m512 s = acc[0];
  for (int j = 1; j < kAcc; ++j) s = _mm512_add_ps(s, acc[j]);
  alignas(64) float o[16];
  _mm512_store_ps(o, s);
  volatile float sink = o[0];
  (void)sink;
  return double(iters) * kAcc * 16 * 2 * 2;
}

__attribute__((target("avx512f"))) double avx512_f32_kernel(int64_t iters) {
  volatile float seed = 1e-3f;
  const __m512 a = _mm512_set1_ps(seed), b = _mm512_set1_ps(seed);
  __m512 acc[kAcc];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kAcc; ++j) acc[j] = _mm512_fmadd_ps(a, b, acc[j]);
  __m512 s = acc[0];
  for (int j = 1; j < kAcc; ++j) s = _mm512_add_ps(s, acc[j]);
  alignas(64) float o[16];
  _mm512_store_ps(o, s);
  volatile float sink = o[0];
  (void)sink;
  return double(iters) * kAcc * 16 * 2;
}

__attribute__((target("avx2,fma"))) double avx2_f32_kernel(int64_t iters) {
  constexpr int kAcc2 = 12;  // 16 ymm registers: 12 accumulators and the two inputs
  volatile float seed = 1e-3f;
  const __m256 a = _mm256_set1_ps(seed), b = _mm256_set1_ps(seed);
  __m256 acc[kAcc2];
  for (auto& v : acc) v = _mm256_setzero_ps();
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kAcc2; ++j) acc[j] = _mm256_fmadd_ps(a, b, acc[j]);
  __m256 s = acc[0];
  for (int j = 1; j < kAcc2; ++j) s = _mm256_add_ps(s, acc[j]);
  alignas(32) float o[8];
  _mm256_store_ps(o, s);
  volatile float sink = o[0];
  (void)sink;
  return double(iters) * kAcc2 * 8 * 2;
}

#endif  // __x86_64__

struct PeakResult {
  double gflops = 0, gflops_per_cpu_s = 0;
};

// Runs `kernel` on `threads` threads, `iters` iterations each; FLOP / wall s and FLOP / CPU s.
PeakResult run_threads(Kernel kernel, int threads, int64_t iters) {
  std::vector<double> flops(threads), cpu(threads);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const double c0 = thread_cpu_seconds();
      flops[t] = kernel(iters);
      cpu[t] = thread_cpu_seconds() - c0;
    });
  for (auto& th : pool) th.join();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double f = 0, c = 0;
  for (int t = 0; t < threads; ++t) {
    f += flops[t];
    c += cpu[t];
  }
  return {f / wall / 1e9, f / c / 1e9};
}

PeakResult measure_peak(Kernel kernel, int threads, double seconds) {
  int64_t iters = 1 << 12;
  for (;;) {  // calibrate on one thread's CPU time
    const double c0 = thread_cpu_seconds();
    kernel(iters);
    const double c = thread_cpu_seconds() - c0;
    if (c > seconds / 4 || iters > (int64_t(1) << 40)) {
      iters = int64_t(double(iters) * seconds / std::max(c, 1e-6));
      break;
    }
    iters *= 4;
  }
  PeakResult best;
  for (int rep = 0; rep < 3; ++rep) {
    const PeakResult r = run_threads(kernel, threads, iters);
    best.gflops = std::max(best.gflops, r.gflops);
    best.gflops_per_cpu_s = std::max(best.gflops_per_cpu_s, r.gflops_per_cpu_s);
  }
  return best;
}

Tensor random_tensor(Shape shape, uint64_t seed) {
  Tensor t = Tensor::zeros(std::move(shape));
  Rng rng(seed);
  fill_uniform(t, rng, -1.0f, 1.0f);
  return t;
}

void print(const nlohmann::ordered_json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0.3;
  bool gemm = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = std::max(0.01, std::atof(argv[++i]));
    } else if (!std::strcmp(argv[i], "--no-gemm")) {
      gemm = false;
    } else {
      std::fprintf(stderr, "usage: bench_amx_peak [--seconds S] [--no-gemm]\n");
      return 2;
    }
  }
  const int cores = num_cores();
  const std::vector<int> thread_counts =
      cores > 1 ? std::vector<int>{1, cores} : std::vector<int>{1};
  // Per-CPU-second peaks by unit, from the one-thread run (for the GEMM shares below).
  std::vector<std::pair<std::string, double>> peaks;
  auto peak_of = [&](const std::string& unit) {
    for (const auto& [u, v] : peaks)
      if (u == unit) return v;
    return 0.0;
  };

#if defined(__x86_64__)
  const Support s = detect();
  for (auto& v : g_tile_src) v = 0x3a80;
  struct Unit {
    const char* name;
    bool available;
    std::string reason;
    Kernel kernel;
    double flop_per_instruction;
  };
  const std::vector<Unit> units = {
      {"amx_bf16", s.amx_permit, s.amx_reason, amx_bf16_kernel, 16384},
      {"avx512_bf16", s.avx512_bf16, "the CPU has no AVX512-BF16", avx512_bf16_kernel, 64},
      {"avx512_f32", s.avx512f, "the CPU has no AVX-512F", avx512_f32_kernel, 32},
      {"avx2_f32", s.avx2_fma, "the CPU has no AVX2/FMA", avx2_f32_kernel, 16}};
  for (const Unit& u : units) {
    if (!u.available) {
      print({{"bench", "amx_peak"}, {"unit", u.name}, {"available", false}, {"reason", u.reason}});
      continue;
    }
    for (int threads : thread_counts) {
      const PeakResult r = measure_peak(u.kernel, threads, seconds);
      if (threads == 1) peaks.emplace_back(u.name, r.gflops_per_cpu_s);
      print({{"bench", "amx_peak"},
             {"unit", u.name},
             {"available", true},
             {"flop_per_instruction", u.flop_per_instruction},
             {"threads", threads},
             {"gflops", round1(r.gflops)},
             {"gflops_per_core", round1(r.gflops / threads)},
             {"gflops_per_cpu_s", round1(r.gflops_per_cpu_s)},
             {"load1", [] {
                double l[1] = {0};
                return getloadavg(l, 1) == 1 ? std::round(l[0] * 100) / 100 : -1.0;
              }()}});
    }
  }
#else
  print({{"bench", "amx_peak"},
         {"unit", "amx_bf16"},
         {"available", false},
         {"reason", "not an x86-64 build"}});
#endif
  if (!gemm) return 0;

  // The frozen-base products as a share of the measured peaks (per CPU-second).
  const double bf16_peak = peak_of("amx_bf16") > 0 ? peak_of("amx_bf16") : peak_of("avx512_bf16");
  const char* bf16_unit = peak_of("amx_bf16") > 0 ? "amx_bf16" : "avx512_bf16";
  const double f32_peak = peak_of("avx512_f32") > 0 ? peak_of("avx512_f32") : peak_of("avx2_f32");
  const char* f32_unit = peak_of("avx512_f32") > 0 ? "avx512_f32" : "avx2_f32";
  struct Shape3 {
    int64_t M, K, N;
  };
  for (const Shape3& sh : std::vector<Shape3>{{512, 3584, 3584}, {512, 896, 4864}}) {
    const Tensor x = random_tensor({sh.M, sh.K}, 1), dy = random_tensor({sh.M, sh.N}, 2);
    const Tensor w32 = random_tensor({sh.N, sh.K}, 3);
    Tensor y = Tensor::zeros({sh.M, sh.N}), dx = Tensor::zeros({sh.M, sh.K});
    for (DType dt : {DType::BF16, DType::F32}) {
      const Tensor w = w32.to(dt);
      const bool bf16 = dt == DType::BF16;
      if (bf16 && !gemm_bf16_native_supported()) continue;
      set_gemm_bf16_mode(Bf16Mode::Native);
      for (int threads : thread_counts) {
        set_num_threads(threads);
        for (const char* op : {"x_wt", "dy_w"}) {
          const bool fwd = !std::strcmp(op, "x_wt");
          auto fn = [&] {
            if (fwd)
              matmul_x_wt(x.data<float>(), sh.M, w, y.data<float>(), 0.0f);
            else
              matmul_dy_w(dy.data<float>(), sh.M, w, dx.data<float>(), 0.0f);
          };
          fn();  // warm-up: primitive creation, scratch buffers
          double best_wall = 1e30, best_cpu = 1e30;
          for (int rep = 0; rep < 5; ++rep) {
            const auto t0 = std::chrono::steady_clock::now();
            const double c0 = process_cpu_seconds();
            fn();
            best_cpu = std::min(best_cpu, process_cpu_seconds() - c0);
            best_wall = std::min(
                best_wall,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
          }
          const double flop = 2.0 * double(sh.M) * double(sh.K) * double(sh.N);
          const double per_cpu = flop / best_cpu / 1e9;
          const double peak = bf16 ? bf16_peak : f32_peak;
          nlohmann::ordered_json row = {{"bench", "amx_peak"},
                                        {"gemm", std::to_string(sh.M) + "x" + std::to_string(sh.K) +
                                                     "x" + std::to_string(sh.N)},
                                        {"op", op},
                                        {"weight", dtype_name(dt)},
                                        {"path", bf16 ? bf16_path_name(gemm_bf16_path()) : "f32"},
                                        {"threads", threads},
                                        {"gflops", round1(flop / best_wall / 1e9)},
                                        {"gflops_per_cpu_s", round1(per_cpu)},
                                        {"peak_unit", bf16 ? bf16_unit : f32_unit}};
          if (peak > 0) row["share_of_peak"] = std::round(per_cpu / peak * 1000) / 1000;
          print(row);
        }
      }
    }
  }
  return 0;
}
