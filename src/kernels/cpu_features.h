// What the CPU can do, detected once at run time (CPUID with the OS's register-state support, via
// the compiler's __builtin_cpu_supports). The kernels are built for baseline x86-64 and pick an
// AVX2 or AVX-512 variant from this at run time (simd_level()).
#pragma once

#include <string>

namespace peft {

struct CpuFeatures {
  std::string model;  // /proc/cpuinfo "model name", or "unknown"
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false;
  bool avx512_bf16 = false;  // VDPBF16PS: bf16 dot products accumulating in f32
  bool avx512_fp16 = false;
};

const CpuFeatures& cpu_features();
// The detected flags in /proc/cpuinfo spelling, e.g. "avx2 fma f16c avx512f ... avx512_bf16".
std::string cpu_features_str();

// Throughput of AVX512-BF16 dot products (VDPBF16PS) relative to f32 FMAs (VFMADD231PS), in
// FLOPs: about 2 where bf16 runs at the full vector rate, about 0.5 on an Intel Emerald Rapids
// without AMX (measured here). Measured once per process by a register-only probe of about 1 ms
// (no memory traffic; thread CPU time, so other load on the machine barely moves it); 0 when the
// CPU lacks AVX512-BF16.
double bf16_dot_flops_ratio();

// Instruction-set level the hand-vectorised kernels run at.
enum class SimdLevel { Generic, Avx2, Avx512 };
const char* simd_level_name(SimdLevel l);
// The best level the CPU supports (Avx2 needs avx2+fma+f16c; Avx512 needs avx512f/bw/vl too).
SimdLevel simd_level_supported();
// The level in use: simd_level_supported() unless lowered by set_simd_level (tests use this to
// run every variant); raising it above what the CPU supports is an internal error.
SimdLevel simd_level();
void set_simd_level(SimdLevel l);

}  // namespace peft
