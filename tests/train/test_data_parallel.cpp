// The single-process pieces of data-parallel training (train/data_parallel.h): how records and
// parameters are split over ranks, the sharded AdamW (ZeRO-1) and the replica checksum. The
// multi-process behaviour is tests/scripts/test_mpi.sh (ctest mpi_data_parallel).
#include <gtest/gtest.h>

#include <cstring>

#include "autograd/params.h"
#include "core/rng.h"
#include "core/threads.h"
#include "train/adamw.h"
#include "train/data_parallel.h"

namespace peft {
namespace {

TEST(DataParallel, SharesCoverEveryItemOnceInOrderAndDifferByAtMostOne) {
  for (int64_t n : {0, 1, 2, 5, 7, 64, 1001})
    for (int ranks : {1, 2, 3, 8}) {
      int64_t next = 0, smallest = n, largest = 0;
      for (int r = 0; r < ranks; ++r) {
        const auto [lo, hi] = share_of(n, r, ranks);
        EXPECT_EQ(lo, next) << n << " over " << ranks;
        next = hi;
        smallest = std::min(smallest, hi - lo);
        largest = std::max(largest, hi - lo);
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(largest - smallest, 1);
    }
  const std::vector<size_t> batch{9, 4, 7, 1, 3};
  EXPECT_EQ(records_of_rank(batch, 0, 2), (std::vector<size_t>{9, 4}));
  EXPECT_EQ(records_of_rank(batch, 1, 2), (std::vector<size_t>{7, 1, 3}));
  EXPECT_TRUE(records_of_rank({2}, 0, 2).empty());
}

// ZeRO-1: optimizers over the slices [0, k) and [k, n), each stepping its own slice, leave the
// parameters bit-identical to one optimizer over everything.
TEST(DataParallel, ShardedAdamWEqualsTheWholeUpdate) {
  auto make = [](ParamStore& p) {
    p.declare("a", {37});
    p.declare("b", {5, 3});
    p.allocate();
    Rng rng(7, 0);
    fill_normal(p.values(), rng, 0.0f, 1.0f);
  };
  ParamStore whole, sharded;
  make(whole);
  make(sharded);
  const int64_t n = whole.size(), k = share_of(n, 1, 2).first;
  AdamWConfig config{0.9f, 0.999f, 1e-8f, 0.01f};
  AdamW one(whole, config), lower(sharded, config, 0, k), upper(sharded, config, k, n);
  EXPECT_EQ(lower.m().numel() + upper.m().numel(), n);
  Rng grads(7, 1);
  for (int step = 0; step < 3; ++step) {
    fill_normal(whole.grads(), grads, 0.0f, 1.0f);
    sharded.grads().copy_from(whole.grads());
    one.step(1e-2f);
    lower.step(1e-2f);
    upper.step(1e-2f);
  }
  EXPECT_EQ(std::memcmp(whole.values().raw(), sharded.values().raw(), whole.values().nbytes()), 0);
  EXPECT_EQ(std::memcmp(one.v().data<float>() + k, upper.v().raw(), upper.v().nbytes()), 0);
}

TEST(DataParallel, FingerprintSeesEveryBitAndNotTheThreadCount) {
  Tensor t = Tensor::zeros({1000});
  Rng rng(3, 0);
  fill_normal(t, rng, 0.0f, 1.0f);
  set_num_threads(1);
  const uint64_t one = fingerprint(t);
  set_num_threads(2);
  EXPECT_EQ(fingerprint(t), one);
  uint32_t bits;
  std::memcpy(&bits, t.data<float>() + 500, 4);
  bits ^= 1u;  // the lowest mantissa bit of one value
  std::memcpy(t.data<float>() + 500, &bits, 4);
  EXPECT_NE(fingerprint(t), one);
  std::swap(t.data<float>()[1], t.data<float>()[2]);  // the order counts too
  std::memcpy(t.data<float>() + 500, &(bits ^= 1u), 4);
  EXPECT_NE(fingerprint(t), one);
  set_num_threads(1);
}

}  // namespace
}  // namespace peft
