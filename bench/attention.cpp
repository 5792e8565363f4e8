// bench_attention: the fused flash-style attention against the naive one that materialises the
// [H, T, T] probabilities, forward and backward, with the peak memory each adds. One JSON line.
// Shape: B 1, H 14, Hkv 2, D 64 (Qwen2-0.5B's attention), causal, T = 256, 1024, 4096.
//
//   bench_attention [--reps R] [--max-t T] [--threads N] [--block-q Q] [--block-k K]
//
// Times are the best of R runs after one warm-up (the best is the least disturbed by other work
// on the machine); at T = 4096 one run each, to keep the whole bench under a minute. Peak memory
// is the growth of the process's resident high-water mark over one forward + backward, outputs
// and gradients included (Linux: reset through /proc/self/clear_refs; −1 where unavailable).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/threads.h"
#include "ops/attention.h"

namespace {

using namespace peft;

double seconds(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int64_t status_kb(const char* key) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  int64_t kb = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, std::strlen(key)) == 0) kb = std::atoll(line + std::strlen(key));
  std::fclose(f);
  return kb;
}

// Peak resident growth (bytes) while fn runs, or −1.
int64_t peak_growth(const std::function<void()>& fn) {
  std::FILE* reset = std::fopen("/proc/self/clear_refs", "w");
  const bool ok = reset && std::fputs("5", reset) >= 0;
  if (reset) std::fclose(reset);
  const int64_t before = status_kb("VmRSS:");
  fn();
  const int64_t peak = status_kb("VmHWM:");
  return ok && before >= 0 && peak >= 0 ? (peak - before) * 1024 : -1;
}

Tensor random_tensor(Shape shape, uint64_t seed) {
  Tensor t = Tensor::zeros(std::move(shape));
  Rng rng(seed);
  fill_uniform(t, rng, -1.0f, 1.0f);
  return t;
}

struct Impl {
  const char* name;
  // Runs the forward; returns the backward to run next (holding what the forward saved).
  std::function<std::function<void()>()> forward;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 3, threads = 0;
  int64_t max_t = 4096;
  AttentionOptions opts;  // causal, scale 1/√D, default tiles
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--max-t") && i + 1 < argc)
      max_t = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--block-q") && i + 1 < argc)
      opts.block_q = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--block-k") && i + 1 < argc)
      opts.block_k = std::atoll(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: bench_attention [--reps R] [--max-t T] [--threads N] [--block-q Q] "
                   "[--block-k K]\n");
      return 2;
    }
  }
  set_num_threads(threads);
  const int64_t B = 1, H = 14, Hkv = 2, D = 64;
  nlohmann::json rows = nlohmann::json::array();
  for (const int64_t T : {int64_t(256), int64_t(1024), int64_t(4096)}) {
    if (T > max_t) break;
    const AttentionTensors in{.q = random_tensor({B, T, H, D}, 1),
                              .k = random_tensor({B, T, Hkv, D}, 2),
                              .v = random_tensor({B, T, Hkv, D}, 3)};
    const Tensor dout = random_tensor({B, T, H, D}, 4);
    auto grads = [&] {
      return AttentionTensors{.q = Tensor::zeros(in.q.shape()),
                              .k = Tensor::zeros(in.k.shape()),
                              .v = Tensor::zeros(in.v.shape())};
    };
    const Impl impls[] = {
        {"fused",
         [&]() -> std::function<void()> {
           Tensor out = Tensor::zeros(in.q.shape()), lse = Tensor::zeros({B, T, H});
           attention_forward(in, opts, out, lse);
           return [&, out, lse] { attention_backward(dout, in, out, lse, opts, grads()); };
         }},
        {"naive",
         [&]() -> std::function<void()> {
           Tensor out = Tensor::zeros(in.q.shape()), probs = Tensor::zeros({B, H, T, T});
           attention_naive_forward(in, opts, out, probs);
           return [&, probs] { attention_naive_backward(dout, in, probs, opts, grads()); };
         }},
    };
    const int runs = T >= 4096 ? 1 : reps;
    nlohmann::json row = {{"T", T}};
    for (const Impl& impl : impls) {
      const int64_t peak = peak_growth([&] { impl.forward()(); });  // also the warm-up
      double fwd = 1e30, bwd = 1e30;
      for (int r = 0; r < runs; ++r) {
        std::function<void()> backward;
        fwd = std::min(fwd, seconds([&] { backward = impl.forward(); }));
        bwd = std::min(bwd, seconds(backward));
      }
      row[impl.name] = {{"forward_ms", fwd * 1e3},
                        {"backward_ms", bwd * 1e3},
                        {"peak_mib", peak < 0 ? -1.0 : double(peak) / (1 << 20)}};
    }
    const double f =
        row["fused"]["forward_ms"].get<double>() + row["fused"]["backward_ms"].get<double>();
    const double n =
        row["naive"]["forward_ms"].get<double>() + row["naive"]["backward_ms"].get<double>();
    row["fused_over_naive_time"] = f / n;
    rows.push_back(row);
  }
  const nlohmann::json result = {{"bench", "attention"},
                                 {"B", B},
                                 {"H", H},
                                 {"Hkv", Hkv},
                                 {"D", D},
                                 {"causal", true},
                                 {"block_q", opts.block_q},
                                 {"block_k", opts.block_k},
                                 {"threads", num_threads()},
                                 {"rows", rows}};
  std::printf("%s\n", result.dump().c_str());
  return 0;
}
