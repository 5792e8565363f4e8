// The single-process pieces of data-parallel training (train/data_parallel.h): how records and
// parameters are split over ranks, the sharded AdamW (ZeRO-1), the replica checksum, and when
// backward reports gradients final (the overlapped all-reduce's signal). The multi-process
// behaviour is tests/scripts/test_mpi.sh (ctest mpi_data_parallel).
#include <gtest/gtest.h>

#include <cstring>

#include "autograd/params.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
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

// Copies each watched region's gradient at the moment backward reports it final.
struct FinalSnapshots : GradientWatch {
  explicit FinalSnapshots(const Tensor& grads) : grads(grads) {}
  void plan(const std::vector<GradientUse>& u, size_t) override {
    uses = u;
    taken.assign(uses.size(), {});
  }
  void progress(size_t left) override {
    for (size_t i = 0; i < uses.size(); ++i)
      if (taken[i].empty() && left <= uses[i].first_use) {
        const float* g = grads.data<float>() + uses[i].offset;
        taken[i].assign(g, g + uses[i].numel);
        order.push_back(uses[i].offset);
      }
  }
  const Tensor& grads;
  std::vector<GradientUse> uses;
  std::vector<std::vector<float>> taken;
  std::vector<int64_t> order;  // offsets, in the order they became final
};

// w1 (read first and again last, like a tied embedding), w2 with a LoRA branch (a, b) in the
// middle; x needs a gradient too, so the LoRA factors are read by an op whose other inputs
// already need one.
struct Chain {
  ParamStore params;
  Var x;
  Chain() {
    params.declare("w1", {4, 4});
    params.declare("w2", {4, 4});
    params.declare("a", {2, 4});
    params.declare("b", {4, 2});
    params.allocate();
    Rng rng(3, 0);
    fill_normal(params.values(), rng, 0.0f, 0.5f);
    Tensor xv = Tensor::zeros({3, 4});
    fill_normal(xv, rng, 0.0f, 1.0f);
    x = variable(xv, "x");
  }
  Var loss() {
    LoraBranch lora{params.get("a"), params.get("b"), 0.5f};
    Var h = linear(x, params.get("w1"));
    h = linear(h, params.get("w2"), nullptr, &lora);
    h = linear(h, params.get("w1"));
    return sum(mul(h, h));
  }
};

// A region is final when backward says so: its gradient then never changes again, every watched
// parameter is reported, the tied w1 last, and watching leaves the gradients as they were.
TEST(GradientWatch, RegionsReportedFinalNeverChangeAfterwards) {
  Chain plain, watched;
  {
    Tape tape;
    tape.backward(plain.loss());
  }
  FinalSnapshots snapshots(watched.params.grads());
  {
    Tape tape;
    tape.watch(watched.params.grads().data<float>(), watched.params.size(), &snapshots);
    tape.backward(watched.loss());
  }
  ASSERT_EQ(snapshots.uses.size(), 4u);  // w1, w2, a, b
  for (size_t i = 0; i < snapshots.uses.size(); ++i) {
    const GradientUse& u = snapshots.uses[i];
    ASSERT_EQ(snapshots.taken[i].size(), size_t(u.numel)) << "offset " << u.offset;
    const float* now = watched.params.grads().data<float>() + u.offset;
    for (int64_t j = 0; j < u.numel; ++j)
      EXPECT_EQ(snapshots.taken[i][size_t(j)], now[j]) << "offset " << u.offset << " + " << j;
  }
  EXPECT_EQ(snapshots.order.back(), watched.params.entries()[0].offset);  // w1
  EXPECT_EQ(std::memcmp(plain.params.grads().raw(), watched.params.grads().raw(),
                        watched.params.grads().nbytes()),
            0);
}

// A closure that writes a watched gradient its op never declared is caught, not summed early.
TEST(GradientWatch, UndeclaredGradientWriteIsAnInternalError) {
  Chain chain;
  FinalSnapshots snapshots(chain.params.grads());
  Tape tape;
  tape.watch(chain.params.grads().data<float>(), chain.params.size(), &snapshots);
  // Recorded before the ops that read w2, so it runs after w2 was reported final.
  const Var w2 = chain.params.get("w2");
  tape.record([w2]() { w2->grad_buffer().data<float>()[0] += 1.0f; });
  Var loss = chain.loss();
  EXPECT_THROW(tape.backward(loss), InternalError);
}

// One process: the buckets tile the buffer from its end, and the watched backward starts all of
// them (the last one once the first reader of w1 has run).
TEST(GradientWatch, OverlappedAllreduceStartsEveryBucketDuringBackward) {
  Chain chain;
  OverlappedAllreduce overlap(chain.params.grads(), 16, false);
  EXPECT_EQ(overlap.buckets(), size_t((chain.params.size() + 15) / 16));
  overlap.begin_step();
  {
    Tape tape;
    tape.watch(chain.params.grads().data<float>(), chain.params.size(), &overlap);
    tape.backward(chain.loss());
  }
  EXPECT_EQ(overlap.started_in_backward(), overlap.buckets());
  overlap.finish();
  overlap.begin_step();  // a rank without a backward pass starts them all in finish()
  EXPECT_EQ(overlap.started_in_backward(), 0u);
  overlap.finish();
}

}  // namespace
}  // namespace peft
