// Softmax over the last dimension, and the row primitives the fused attention and
// cross-entropy ops share with it:
//   y_i = exp(x_i − max x) / Σ_j exp(x_j − max x),   dx_i = y_i · (dy_i − Σ_j dy_j · y_j)
// A row that is entirely −inf (fully masked) gives zeros, not NaN.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>

#include "autograd/tape.h"

namespace peft {

// e^x in f32 within 2 ulp for x in [−87, 88]; 0 below −87 (where e^x is near the subnormals) and
// at −inf. Branch-free so that loops calling it vectorise, which std::exp does not: the fused
// ops evaluate one exp per attention score and per logit, and that is not negligible next to
// the matrix products.
// The row primitives are always inlined: the fused ops compile their loops once per SIMD level
// (see attention.cpp), and a helper left out of line would run at the baseline level.
[[gnu::always_inline]] inline float exp_fast(float x) {
  const float xc = std::clamp(x, -87.0f, 88.0f);
  // n = round(x / ln 2) via the 1.5·2^23 shifter (n sits in the low mantissa bits of t);
  // r = x − n·ln 2 in two parts (Cody–Waite) so |r| ≤ ln(2)/2 is exact to f32 precision.
  const float t = xc * 1.44269504f + 12582912.0f;
  const float n = t - 12582912.0f;
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  // e^r by Taylor to degree 7: truncation < 6e-9 relative for |r| ≤ 0.347.
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n assembled from its exponent bits: bits(t) = 0x4B400000 + n.
  const float two_n = std::bit_cast<float>((std::bit_cast<int32_t>(t) - 0x4B400000 + 127) << 23);
  return x < -87.0f ? 0.0f : p * two_n;
}

// Reductions keep independent partial results in lanes (16 floats, 8 doubles: one AVX-512
// register), so the compiler can vectorise them without reassociating a single chain, which it
// may not do without -ffast-math.
constexpr int64_t kReductionLanes = 8;

// max_i x_i (−inf for n = 0). Written with a GCC / Clang vector type of 4 floats (which every
// x86-64 and Arm level has): the compiler keeps the lane array of a plain loop in scalar
// registers here, and a max over a single chain it may not vectorise (NaN ordering).
[[gnu::always_inline]] inline float row_max(const float* x, int64_t n) {
  typedef float f32x4 __attribute__((vector_size(16)));
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const f32x4 init = {kNegInf, kNegInf, kNegInf, kNegInf};
  f32x4 m0 = init, m1 = init, m2 = init, m3 = init;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    f32x4 v[4];
    std::memcpy(v, x + i, sizeof v);
    m0 = v[0] > m0 ? v[0] : m0;
    m1 = v[1] > m1 ? v[1] : m1;
    m2 = v[2] > m2 ? v[2] : m2;
    m3 = v[3] > m3 ? v[3] : m3;
  }
  m0 = m1 > m0 ? m1 : m0;
  m2 = m3 > m2 ? m3 : m2;
  m0 = m2 > m0 ? m2 : m0;
  float m = kNegInf;
  for (int u = 0; u < 4; ++u) m = m0[u] > m ? m0[u] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// y_i = exp(x_i − shift) for i < n; returns Σ y_i accumulated in f64. y may alias x.
[[gnu::always_inline]] inline double exp_shifted_sum(const float* x, int64_t n, float shift,
                                                     float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_fast(x[i] - shift);
  double lanes[kReductionLanes] = {};
  int64_t i = 0;
  for (; i + kReductionLanes <= n; i += kReductionLanes)
    for (int64_t u = 0; u < kReductionLanes; ++u) lanes[u] += y[i + u];
  for (; i < n; ++i) lanes[0] += y[i];
  double s = 0;
  for (double v : lanes) s += v;
  return s;
}

Var softmax(const Var& x);

// Raw kernels over rows of the last dimension. softmax_backward accumulates (+=) into dx.
void softmax_forward(const Tensor& x, Tensor& y);
void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx);

}  // namespace peft
