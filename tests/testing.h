// Helpers shared by the C++ tests: random data, f64 references and finite-difference checks.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/gemm.h"
#include "tolerances.h"

namespace peft::testing {

using Vec = std::vector<double>;
// A reference forward in f64: inputs (flattened) -> output (flattened).
using RefForward = std::function<Vec(const Vec&)>;

inline Vec random_vec(size_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed, 7);
  Vec v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * (2.0 * rng.uniform_at(i) - 1.0);
  return v;
}

inline Tensor to_tensor(const Vec& v, Shape shape) {
  std::vector<float> f(v.begin(), v.end());
  return Tensor::from_vector(f, std::move(shape));
}

inline Vec to_vec(const Tensor& t) {
  std::vector<float> f = t.to_vector();
  return Vec(f.begin(), f.end());
}

// Elementwise |a − b| ≤ abs + rel·|b|, reporting the first few offenders.
// x rounded to bf16 (nearest even) and back: what the native bf16 GEMM does to its f32 operand.
inline Tensor round_to_bf16(const Tensor& x) {
  return x.to(DType::BF16).to(DType::F32);
}

// Sets how bf16 weights multiply for one scope (kernels/gemm.h), then returns to the automatic
// choice.
struct Bf16ModeScope {
  explicit Bf16ModeScope(Bf16Mode mode) { set_gemm_bf16_mode(mode); }
  ~Bf16ModeScope() { set_gemm_bf16_mode(Bf16Mode::Auto); }
  Bf16ModeScope(const Bf16ModeScope&) = delete;
  Bf16ModeScope& operator=(const Bf16ModeScope&) = delete;
};

// The bf16 paths this CPU can run: f32 panels always, oneDNN's native bf16 where supported.
inline std::vector<Bf16Mode> bf16_modes_here() {
  if (gemm_bf16_native_supported()) return {Bf16Mode::F32Panels, Bf16Mode::Native};
  return {Bf16Mode::F32Panels};
}

inline ::testing::AssertionResult all_close(const Vec& ours, const Vec& ref, double abs,
                                            double rel) {
  if (ours.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << ours.size() << " vs " << ref.size();
  int bad = 0;
  std::string msg;
  for (size_t i = 0; i < ours.size(); ++i) {
    const double err = std::fabs(ours[i] - ref[i]);
    if (!(err <= abs + rel * std::fabs(ref[i]))) {
      if (bad < 5)
        msg += "\n  [" + std::to_string(i) + "] ours " + std::to_string(ours[i]) + " ref " +
               std::to_string(ref[i]);
      ++bad;
    }
  }
  if (bad)
    return ::testing::AssertionFailure() << bad << " of " << ours.size() << " differ:" << msg;
  return ::testing::AssertionSuccess();
}

// d/dx Σ_i upstream_i · f(x)_i by f64 central differences.
inline Vec finite_difference_vjp(const RefForward& f, const Vec& x, const Vec& upstream,
                                 double h = tol::kFiniteDifferenceStep) {
  Vec grad(x.size());
  Vec xp = x;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = xp[i];
    xp[i] = keep + h;
    const Vec fp = f(xp);
    xp[i] = keep - h;
    const Vec fm = f(xp);
    xp[i] = keep;
    double d = 0;
    for (size_t k = 0; k < fp.size(); ++k) d += upstream[k] * (fp[k] - fm[k]);
    grad[i] = d / (2 * h);
  }
  return grad;
}

// max|ours − fd| ≤ tol · max(1, max|fd|)
inline ::testing::AssertionResult gradient_close(const Vec& ours, const Vec& fd,
                                                 double tol = tol::kBackwardRel) {
  if (ours.size() != fd.size())
    return ::testing::AssertionFailure() << "size " << ours.size() << " vs " << fd.size();
  double scale = 1, worst = 0;
  size_t at = 0;
  for (double v : fd) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < ours.size(); ++i) {
    const double e = std::fabs(ours[i] - fd[i]);
    if (!(e <= worst)) worst = e, at = i;
  }
  if (!(worst <= tol * scale))
    return ::testing::AssertionFailure()
           << "max error " << worst << " at [" << at << "] (ours " << ours[at] << ", fd " << fd[at]
           << "), allowed " << tol * scale;
  return ::testing::AssertionSuccess();
}

// Growth of the process's peak resident memory while fn runs, in bytes: resets the high-water
// mark (Linux: "5" to /proc/self/clear_refs), then compares VmHWM after fn with VmRSS before it.
// Returns −1 where /proc does not offer this; callers then skip their memory checks.
// Under AddressSanitizer freed memory sits in a quarantine and stays resident, so the growth says
// nothing about the code: −1 there too.
inline int64_t peak_rss_growth(const std::function<void()>& fn) {
#if defined(__SANITIZE_ADDRESS__)
  (void)fn;
  return -1;
#endif
  auto status_kb = [](const char* key) -> int64_t {
    std::FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int64_t kb = -1;
    const size_t len = std::strlen(key);
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, key, len) == 0) kb = std::atoll(line + len);
    std::fclose(f);
    return kb;
  };
  std::FILE* reset = std::fopen("/proc/self/clear_refs", "w");
  if (!reset) return -1;
  const bool ok = std::fputs("5", reset) >= 0;
  if (std::fclose(reset) != 0 || !ok) return -1;
  const int64_t before = status_kb("VmRSS:");
  fn();
  const int64_t peak = status_kb("VmHWM:");
  if (before < 0 || peak < 0) return -1;
  return (peak - before) * 1024;
}

}  // namespace peft::testing
