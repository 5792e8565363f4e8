#include "train/data_parallel.h"

#include <algorithm>
#include <cstdint>

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

OverlappedAllreduce::OverlappedAllreduce(Tensor& grads, int64_t bucket_floats, bool bf16)
    : data_(grads.data<float>()), bf16_(bf16) {
  PEFT_CHECK(bucket_floats > 0, "bucket of {} floats", bucket_floats);
  for (int64_t hi = grads.numel(); hi > 0; hi -= bucket_floats)
    buckets_.push_back({std::max<int64_t>(0, hi - bucket_floats), hi, 0});
  begin_step();
}

void OverlappedAllreduce::begin_step() {
  for (Bucket& b : buckets_) b.ready_when_left = SIZE_MAX;
  next_ = 0;
  started_in_backward_ = 0;
}

void OverlappedAllreduce::plan(const std::vector<GradientUse>& uses, size_t) {
  // A bucket is final once every region overlapping it is: when no more closures are left than
  // the earliest first reader among them. Regions no op reads are final from the start.
  for (Bucket& b : buckets_) {
    b.ready_when_left = SIZE_MAX;
    for (const GradientUse& u : uses)
      if (u.offset < b.hi && u.offset + u.numel > b.lo)
        b.ready_when_left = std::min(b.ready_when_left, u.first_use);
  }
}

void OverlappedAllreduce::start_ready(size_t closures_left) {
  while (next_ < buckets_.size() && closures_left <= buckets_[next_].ready_when_left) {
    const Bucket& b = buckets_[next_++];
    dist::start_allreduce_sum(data_ + b.lo, b.hi - b.lo, bf16_);
  }
}

void OverlappedAllreduce::progress(size_t closures_left) {
  const size_t before = next_;
  start_ready(closures_left);
  started_in_backward_ += next_ - before;
  dist::progress();
}

void OverlappedAllreduce::finish() {
  start_ready(0);
  dist::wait_all();
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
