// The gradient all-reduce of data-parallel training on its own: mpirun -np N bench_allreduce
// [FLOATS] sums a buffer of FLOATS f32 values (default 4,399,104: LoRA r 8 on every linear layer
// of Qwen2-0.5B) over the ranks, 3 warm-up rounds then 20 timed, in f32 and in bf16, and prints
// one JSON line from rank 0: median milliseconds per all-reduce and the algorithm bandwidth
// (buffer bytes / time).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "dist/comm.h"

namespace {

double median_ms(std::vector<float>& buffer, bool bf16) {
  std::vector<double> times;
  for (int round = 0; round < 23; ++round) {
    peft::dist::barrier();
    const auto start = std::chrono::steady_clock::now();
    if (bf16)
      peft::dist::allreduce_sum_bf16(buffer.data(), int64_t(buffer.size()));
    else
      peft::dist::allreduce_sum(buffer.data(), int64_t(buffer.size()));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (round >= 3) times.push_back(ms);
    std::fill(buffer.begin(), buffer.end(), 1.0f / float(peft::dist::size()));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const long floats = argc > 1 ? std::atol(argv[1]) : 4399104L;
  peft::dist::init();
  std::vector<float> buffer(size_t(std::max(1L, floats)), 0.5f);
  const double f32 = median_ms(buffer, false), bf16 = median_ms(buffer, true);
  if (peft::dist::is_root())
    std::printf(
        "{\"bench\":\"allreduce\",\"ranks\":%d,\"floats\":%ld,\"mb\":%.1f,\"f32_ms\":%.3f,"
        "\"f32_gb_s\":%.2f,\"bf16_ms\":%.3f,\"mpi\":\"%s\"}\n",
        peft::dist::size(), floats, double(floats) * 4 / 1e6, f32, double(floats) * 4 / f32 / 1e6,
        bf16, peft::dist::mpi_library().c_str());
  peft::dist::finalize();
  return 0;
}
