#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "autograd/params.h"
#include "core/arena.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"

namespace peft {
namespace {

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {3, 2});
  Tensor rows = t.slice_rows(1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 2}));
  rows.data<float>()[0] = 42;
  EXPECT_EQ(t.data<float>()[2], 42);
  EXPECT_EQ(t.row(2).to_vector(), (std::vector<float>{4, 5}));
  EXPECT_EQ(t.view({-1}).shape(), (Shape{6}));
  EXPECT_THROW(t.view({4}), InternalError);
  EXPECT_THROW(t.slice_rows(2, 4), InternalError);
  Tensor c = t.clone();
  c.data<float>()[0] = 7;
  EXPECT_EQ(t.data<float>()[0], 0);
}

TEST(Tensor, WrongDtypeAccessIsCaught) {
  Tensor t = Tensor::zeros({4}, DType::I32);
  EXPECT_THROW(t.data<float>(), InternalError);
}

TEST(Tensor, MappedFileIsReadOnlyView) {
  const std::string path = ::testing::TempDir() + "/mapped.bin";
  {
    std::ofstream f(path, std::ios::binary);
    float v[4] = {1, 2, 3, 4};
    f.write(reinterpret_cast<char*>(v), sizeof v);
  }
  auto storage = map_file(path);
  Tensor t = Tensor::from_storage(storage, 4, {3}, DType::F32);
  EXPECT_FALSE(t.writable());
  EXPECT_EQ(t.to_vector(), (std::vector<float>{2, 3, 4}));
  EXPECT_THROW(Tensor::from_storage(storage, 8, {3}, DType::F32), InternalError);
  EXPECT_THROW(map_file(path + ".missing"), Error);
  std::remove(path.c_str());
}

// VmRSS of this process in KiB, −1 where /proc does not say.
int64_t resident_kb() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  int64_t kb = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "VmRSS:", 6) == 0) kb = std::atoll(line + 6);
  std::fclose(f);
  return kb;
}

// What a base converted at load relies on: the converted source's pages leave the resident set,
// and the data still read back (from the file) if touched again. Heap tensors keep their data.
TEST(Tensor, ReleasedPagesOfAMappedFileLeaveTheResidentSet) {
  const std::string path = ::testing::TempDir() + "/release.bin";
  const int64_t n = int64_t(8) << 20;  // 32 MiB of f32
  {
    std::ofstream f(path, std::ios::binary);
    std::vector<float> v(size_t(n), 1.5f);
    f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  }
  Tensor t = Tensor::from_storage(map_file(path), 0, {n}, DType::F32);
  const int64_t before = resident_kb();
  double sum = 0;
  for (int64_t i = 0; i < n; i += 1024) sum += t.data<float>()[i];  // touch every page
  const int64_t touched = resident_kb();
  if (before < 0 || touched - before < 16 * 1024) GTEST_SKIP() << "/proc shows no resident growth";
  t.release_pages(0, t.nbytes());
  EXPECT_LT(resident_kb(), before + 4 * 1024);
  EXPECT_EQ(sum, 1.5 * double(n / 1024));
  EXPECT_EQ(t.data<float>()[n - 1], 1.5f);  // read back from the file
  Tensor h = Tensor::from_vector({1, 2, 3}, {3});
  h.release_pages(0, h.nbytes());
  EXPECT_EQ(h.to_vector(), (std::vector<float>{1, 2, 3}));
  std::remove(path.c_str());
}

TEST(Arena, ReusesTheLargestBlockAfterReset) {
  Arena arena(1024);
  Tensor a = arena.zeros({100});
  Tensor b = arena.zeros({1000});  // does not fit the first block
  EXPECT_EQ(arena.bytes_in_use(), 448u + 4032u);
  a.fill(1);
  b.fill(2);
  arena.reset();
  EXPECT_EQ(arena.bytes_in_use(), 0u);
  EXPECT_EQ(arena.bytes_reserved(), 4032u);
  Tensor c = arena.zeros({10});
  EXPECT_EQ(c.to_vector(), std::vector<float>(10, 0.0f));  // zero-filled on reuse
  EXPECT_GE(arena.peak_bytes(), 4480u);
}

TEST(Rng, StreamsDoNotDependOnThreadCount) {
  Tensor one = Tensor::zeros({10007}), two = Tensor::zeros({10007});
  set_num_threads(1);
  Rng r1(123, 4);
  fill_normal(one, r1, 0, 1);
  set_num_threads(2);
  Rng r2(123, 4);
  fill_normal(two, r2, 0, 1);
  set_num_threads(0);
  EXPECT_EQ(one.to_vector(), two.to_vector());
  EXPECT_EQ(r1.position(), 10007u);
}

TEST(Rng, MomentsAreRight) {
  Tensor t = Tensor::zeros({200000});
  Rng rng(9);
  fill_normal(t, rng, 0, 1);
  double mean = 0, var = 0;
  for (float v : t.to_vector()) mean += v;
  mean /= t.numel();
  for (float v : t.to_vector()) var += (v - mean) * (v - mean);
  var /= t.numel();
  EXPECT_NEAR(mean, 0, 0.01);
  EXPECT_NEAR(var, 1, 0.01);
  fill_uniform(t, rng, -1, 3);
  mean = 0;
  for (float v : t.to_vector()) {
    ASSERT_GE(v, -1);
    ASSERT_LT(v, 3);
    mean += v;
  }
  EXPECT_NEAR(mean / t.numel(), 1, 0.01);
  Rng other(10);
  EXPECT_NE(Rng(9).bits_at(0), other.bits_at(0));
}

TEST(ParamStore, OneContiguousBufferWithNamedViews) {
  ParamStore p;
  p.declare("a", {3, 5});
  p.declare("b", {7});
  EXPECT_THROW(p.declare("a", {1}), Error);
  p.allocate();
  EXPECT_EQ(p.size(), 32);  // each entry 16-float aligned
  p.get("b")->value.fill(2);
  p.get("a")->grad.fill(1);
  EXPECT_EQ(p.values().data<float>()[16], 2);
  EXPECT_EQ(p.grads().data<float>()[14], 1);
  p.zero_grad();
  EXPECT_EQ(p.get("a")->grad.to_vector(), std::vector<float>(15, 0.0f));
  EXPECT_THROW(p.get("c"), Error);
  EXPECT_THROW(p.declare("c", {1}), Error);
}

}  // namespace
}  // namespace peft
