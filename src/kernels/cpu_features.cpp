#include "kernels/cpu_features.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <fstream>

#include "core/error.h"

namespace peft {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
#if defined(__clang__) && __clang_major__ < 16
  // Clang 14 (Debian's, used for the fuzz build) knows neither "f16c" nor "avx512fp16" here:
  // read them from /proc/cpuinfo's flags instead.
  auto has_flag = [](const std::string& name) {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("flags", 0) == 0)
        return (line + " ").find(" " + name + " ") != std::string::npos;
    return false;
  };
  f.f16c = has_flag("f16c");
#else
  f.f16c = __builtin_cpu_supports("f16c");
#endif
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
#if defined(__clang__) && __clang_major__ < 16
  f.avx512_fp16 = has_flag("avx512_fp16");
#else
  f.avx512_fp16 = __builtin_cpu_supports("avx512fp16");
#endif
  f.model = "unknown";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos && colon + 2 <= line.size()) f.model = line.substr(colon + 2);
    break;
  }
  return f;
}

std::atomic<int> g_simd_override{-1};

double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

#if defined(__x86_64__)
// 16 independent accumulators, so the loops measure throughput, not latency; written in assembly
// so that the instruction stream is the same at every optimisation level.
#define PEFT_PROBE_BODY(op)                                                  \
  op " %%zmm30, %%zmm31, %%zmm0\n\t" op " %%zmm30, %%zmm31, %%zmm1\n\t" op   \
     " %%zmm30, %%zmm31, %%zmm2\n\t" op " %%zmm30, %%zmm31, %%zmm3\n\t" op   \
     " %%zmm30, %%zmm31, %%zmm4\n\t" op " %%zmm30, %%zmm31, %%zmm5\n\t" op   \
     " %%zmm30, %%zmm31, %%zmm6\n\t" op " %%zmm30, %%zmm31, %%zmm7\n\t" op   \
     " %%zmm30, %%zmm31, %%zmm8\n\t" op " %%zmm30, %%zmm31, %%zmm9\n\t" op   \
     " %%zmm30, %%zmm31, %%zmm10\n\t" op " %%zmm30, %%zmm31, %%zmm11\n\t" op \
     " %%zmm30, %%zmm31, %%zmm12\n\t" op " %%zmm30, %%zmm31, %%zmm13\n\t" op \
     " %%zmm30, %%zmm31, %%zmm14\n\t" op " %%zmm30, %%zmm31, %%zmm15\n\t"
#define PEFT_PROBE_CLOBBERS                                                                \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
      "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm30", "xmm31", "rcx", "cc"

// Seconds of thread CPU time for `loops` × 16 instructions of each kind.
__attribute__((target("avx512f,avx512bf16"))) double probe_fma(long loops) {
  const double t0 = thread_seconds();
  __asm__ volatile(
      "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31\n\t"
      "mov %0, %%rcx\n1:\n\t" PEFT_PROBE_BODY("vfmadd231ps") "dec %%rcx\n\tjnz 1b\n\tvzeroupper\n\t"
      :
      : "r"(loops)
      : PEFT_PROBE_CLOBBERS);
  return thread_seconds() - t0;
}

__attribute__((target("avx512f,avx512bf16"))) double probe_bf16(long loops) {
  const double t0 = thread_seconds();
  __asm__ volatile(
      "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31\n\t"
      "mov %0, %%rcx\n1:\n\t" PEFT_PROBE_BODY("vdpbf16ps") "dec %%rcx\n\tjnz 1b\n\tvzeroupper\n\t"
      :
      : "r"(loops)
      : PEFT_PROBE_CLOBBERS);
  return thread_seconds() - t0;
}

double measure_bf16_ratio() {
  if (!cpu_features().avx512_bf16 || !cpu_features().avx512f) return 0.0;
  constexpr long kLoops = 20000;  // 320k instructions: ~60 µs of FMAs, ~250 µs of slow VDPBF16PS
  probe_fma(kLoops);              // warm-up (the core may first raise its AVX-512 power level)
  double fma = 1e9, bf16 = 1e9;
  for (int trial = 0; trial < 5; ++trial) {
    fma = std::min(fma, probe_fma(kLoops));
    bf16 = std::min(bf16, probe_bf16(kLoops));
  }
  // FLOPs per instruction: VFMADD231PS 16 lanes × 2, VDPBF16PS 16 lanes × 2 pairs × 2.
  return (64.0 / bf16) / (32.0 / fma);
}
#else
double measure_bf16_ratio() {
  return 0.0;
}
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string cpu_features_str() {
  const CpuFeatures& f = cpu_features();
  const std::pair<bool, const char*> flags[] = {{f.avx2, "avx2"},
                                                {f.fma, "fma"},
                                                {f.f16c, "f16c"},
                                                {f.avx512f, "avx512f"},
                                                {f.avx512bw, "avx512bw"},
                                                {f.avx512vl, "avx512vl"},
                                                {f.avx512_bf16, "avx512_bf16"},
                                                {f.avx512_fp16, "avx512_fp16"}};
  std::string out;
  for (const auto& [present, name] : flags) {
    if (!present) continue;
    if (!out.empty()) out += ' ';
    out += name;
  }
  return out.empty() ? "none" : out;
}

double bf16_dot_flops_ratio() {
  static const double ratio = measure_bf16_ratio();
  return ratio;
}

const char* simd_level_name(SimdLevel l) {
  switch (l) {
    case SimdLevel::Generic:
      return "generic";
    case SimdLevel::Avx2:
      return "avx2";
    case SimdLevel::Avx512:
      return "avx512";
  }
  return "?";
}

SimdLevel simd_level_supported() {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (avx2 && f.avx512f && f.avx512bw && f.avx512vl) return SimdLevel::Avx512;
  if (avx2) return SimdLevel::Avx2;
  return SimdLevel::Generic;
}

SimdLevel simd_level() {
  const int o = g_simd_override.load(std::memory_order_relaxed);
  return o < 0 ? simd_level_supported() : SimdLevel(o);
}

void set_simd_level(SimdLevel l) {
  PEFT_CHECK(int(l) <= int(simd_level_supported()), "SIMD level {} is not supported by this CPU",
             simd_level_name(l));
  g_simd_override.store(int(l), std::memory_order_relaxed);
}

}  // namespace peft
