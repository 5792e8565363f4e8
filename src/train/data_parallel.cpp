#include "train/data_parallel.h"

#include "core/error.h"
#include "dist/comm.h"

namespace peft {

std::pair<int64_t, int64_t> share_of(int64_t n, int rank, int ranks) {
  PEFT_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "rank {} of {}", rank, ranks);
  return {n * rank / ranks, n * (rank + 1) / ranks};
}

std::vector<size_t> records_of_rank(const std::vector<size_t>& batch, int rank, int ranks) {
  const auto [lo, hi] = share_of(int64_t(batch.size()), rank, ranks);
  return std::vector<size_t>(batch.begin() + lo, batch.begin() + hi);
}

uint64_t fingerprint(const Tensor& t) {
  const uint32_t* w = static_cast<const uint32_t*>(t.raw());
  const int64_t n = int64_t(t.nbytes() / 4);
  uint64_t sum = 0;
  // Integer sums are exact, so the result is the same for any number of threads.
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    sum += (uint64_t(w[i]) + 1) * (0x9E3779B97F4A7C15ull ^ uint64_t(i));
  return sum;
}

void check_replicas_agree(const Tensor& values, const char* when) {
  if (dist::size() <= 1) return;
  uint64_t lo = fingerprint(values), hi = lo;
  dist::allreduce_min_max(&lo, &hi);
  if (lo != hi)
    fail(
        "{}: the ranks' trainable parameters differ (the MPI sums were not identical on every "
        "rank); training stopped",
        when);
}

}  // namespace peft
