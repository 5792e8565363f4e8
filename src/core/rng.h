// Counter-based random numbers (Philox-4x32-10, Salmon et al. 2011). Value i of a stream depends
// only on (seed, stream, i), never on the thread that computes it or on the thread count, so
// parallel fills, dropout masks and initialisations are reproducible everywhere.
#pragma once

#include <array>
#include <cstdint>

namespace peft {

class Tensor;

std::array<uint32_t, 4> philox4x32(uint64_t counter, uint64_t stream, uint64_t seed);

class Rng {
 public:
  Rng(uint64_t seed = 0, uint64_t stream = 0) : seed_(seed), stream_(stream) {}
  // The i-th draw, uniform in [0, 1) with 24 random bits.
  float uniform_at(uint64_t i) const;
  // The i-th draw from N(0, 1) (Box–Muller on the two halves of one Philox block).
  float normal_at(uint64_t i) const;
  uint32_t bits_at(uint64_t i) const;

  // Sequential use: draws from an internal position that advances (checkpointed as state()).
  float uniform() { return uniform_at(position_++); }
  float normal() { return normal_at(position_++); }
  uint64_t below(uint64_t n);  // uniform integer in [0, n)

  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }
  uint64_t position() const { return position_; }
  void set_position(uint64_t p) { position_ = p; }
  // Reserves n draws for a parallel fill and returns the first index.
  uint64_t reserve(uint64_t n) {
    uint64_t first = position_;
    position_ += n;
    return first;
  }

 private:
  uint64_t seed_, stream_, position_ = 0;
};

// Parallel fills of an f32 tensor; element i uses draw (rng.reserve(numel()) + i).
void fill_uniform(Tensor& t, Rng& rng, float low, float high);
void fill_normal(Tensor& t, Rng& rng, float mean, float stddev);

}  // namespace peft
