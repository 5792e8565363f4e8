#include "core/rng.h"

#include <cmath>

#include "core/tensor.h"

namespace peft {

std::array<uint32_t, 4> philox4x32(uint64_t counter, uint64_t stream, uint64_t seed) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32);
  uint32_t c2 = uint32_t(stream), c3 = uint32_t(stream >> 32);
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * c0;
    const uint64_t p1 = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n1 = uint32_t(p1);
    const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    const uint32_t n3 = uint32_t(p0);
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {c0, c1, c2, c3};
}

uint32_t Rng::bits_at(uint64_t i) const {
  return philox4x32(i, stream_, seed_)[0];
}

float Rng::uniform_at(uint64_t i) const {
  return float(bits_at(i) >> 8) * (1.0f / 16777216.0f);
}

float Rng::normal_at(uint64_t i) const {
  const auto r = philox4x32(i, stream_, seed_);
  // u1 in (0, 1] so the log is finite.
  const double u1 = (double(r[0] >> 8) + 1.0) / 16777216.0;
  const double u2 = double(r[1] >> 8) / 16777216.0;
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

uint64_t Rng::below(uint64_t n) {
  const auto r = philox4x32(position_++, stream_, seed_);
  const uint64_t x = (uint64_t(r[0]) << 32) | r[1];
  return n ? x % n : 0;
}

void fill_uniform(Tensor& t, Rng& rng, float low, float high) {
  float* p = t.data<float>();
  const int64_t n = t.numel();
  const uint64_t first = rng.reserve(uint64_t(n));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = low + (high - low) * rng.uniform_at(first + uint64_t(i));
}

void fill_normal(Tensor& t, Rng& rng, float mean, float stddev) {
  float* p = t.data<float>();
  const int64_t n = t.numel();
  const uint64_t first = rng.reserve(uint64_t(n));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = mean + stddev * rng.normal_at(first + uint64_t(i));
}

}  // namespace peft
