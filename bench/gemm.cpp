// bench_gemm: GFLOP/s of the linear layer's products by shape, weight dtype, backend and thread
// count, as one JSON line. Products: y[M, N] = x[M, K] · Wᵀ with W [N, K] (op "x_wt", the
// forward) and dx[M, K] = dy[M, N] · W (op "dy_w", the backward through a frozen weight); plus the
// small LoRA products (rank 8) that decide the backend for thin GEMMs.
//
//   bench_gemm [--reps R] [--quick] [--no-peer]
//
// The peer, run in the same invocation unless --no-peer: PyTorch's F.linear / matmul on the same
// shapes and thread counts, f32 and bf16 (both operands bf16, as under autocast), with
// Debian's PyTorch on /usr/bin/python3 (PEFT_BENCH_PYTHON overrides the interpreter). Each peer
// row carries ratio = our default path's best GFLOP/s over PyTorch's.
//
// Each row reports the best and the median of R timed runs after one warm-up (the best is the
// least disturbed by other work on the machine), and gflops_cpu: FLOPs × threads per second of
// process CPU time, which other load on the machine inflates far less than the wall-clock rate
// (on a dedicated machine the two agree, less any time threads spend waiting).
#include <stdlib.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "kernels/cpu_features.h"
#include "kernels/gemm.h"

namespace {

using namespace peft;

struct Timing {
  double best_s, median_s, best_cpu_s;
};

double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

Timing time_it(const std::function<void()>& fn, int reps) {
  fn();  // warm-up: primitive creation, page faults, scratch buffers
  std::vector<double> t;
  double cpu = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = process_cpu_seconds();
    fn();
    cpu = std::min(cpu, process_cpu_seconds() - cpu_start);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return {t.front(), t[t.size() / 2], cpu};
}

double round1(double v) {
  return std::round(v * 10) / 10;
}

// The PyTorch peer: prints one JSON object {"torch": version, "rows": [...]}.
constexpr const char* kTorchPeer = R"(
import json, sys, time
import torch
import torch.nn.functional as F
reps = int(sys.argv[1]); quick = sys.argv[2] == "1"
rows = []
for M, K, N in [(512, 896, 4864), (512, 3584, 3584)]:
    x = torch.rand(M, K) * 2 - 1
    w = torch.rand(N, K) * 2 - 1
    dy = torch.rand(M, N) * 2 - 1
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for dtype in ("f32", "bf16"):
            xx, ww, dd = (x, w, dy) if dtype == "f32" else (x.bfloat16(), w.bfloat16(), dy.bfloat16())
            for op in (("x_wt",) if quick else ("x_wt", "dy_w")):
                f = (lambda: F.linear(xx, ww)) if op == "x_wt" else (lambda: dd @ ww)
                f()
                ts = []
                for _ in range(reps):
                    t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
                ts.sort()
                rows.append({"M": M, "K": K, "N": N, "op": op, "dtype": dtype, "threads": threads,
                             "gflops": round(2 * M * N * K / ts[0] / 1e9, 1)})
print(json.dumps({"torch": torch.__version__, "rows": rows}))
)";

// Runs the peer script; the parsed object, or {"error": ...} when it cannot run.
nlohmann::json run_torch_peer(int reps, bool quick) {
  const char* python = std::getenv("PEFT_BENCH_PYTHON");
  if (!python || !*python) python = "/usr/bin/python3";
  char path[] = "/tmp/peft_bench_gemm_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return {{"error", "cannot create a temporary file"}};
  FILE* script = fdopen(fd, "w");
  std::fputs(kTorchPeer, script);
  std::fclose(script);
  const std::string command = std::string(python) + " " + path + " " + std::to_string(reps) + " " +
                              (quick ? "1" : "0") + " 2>&1";
  std::string output;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    pclose(pipe);
  }
  std::remove(path);
  const size_t start = output.rfind("{\"torch\"");
  if (start == std::string::npos)
    return {{"error", output.substr(output.size() > 300 ? output.size() - 300 : 0)}};
  return nlohmann::json::parse(output.substr(start), nullptr, false);
}

Tensor random_tensor(Shape shape, uint64_t seed) {
  Tensor t = Tensor::zeros(std::move(shape));
  Rng rng(seed);
  fill_uniform(t, rng, -1.0f, 1.0f);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  bool quick = false, peer = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--no-peer")) {
      peer = false;
    } else if (!std::strcmp(argv[i], "--quick")) {
      quick = true;
      reps = 3;
    } else {
      std::fprintf(stderr, "usage: bench_gemm [--reps R] [--quick] [--no-peer]\n");
      return 2;
    }
  }

  nlohmann::ordered_json out;
  out["bench"] = "gemm";
  for (const auto& [key, value] : gemm_system_info()) out[key] = value;
  out["bf16_dot_flops_ratio"] = std::round(bf16_dot_flops_ratio() * 100) / 100;
  out["bf16_native_gemm_speedup"] = std::round(gemm_bf16_native_speedup() * 100) / 100;
  out["reps"] = reps;
  nlohmann::json rows = nlohmann::json::array();

  struct Shape3 {
    int64_t M, K, N;
  };
  const std::vector<Shape3> shapes = {{512, 896, 4864}, {512, 3584, 3584}};
  const std::vector<GemmBackend> backends = {GemmBackend::OneDNN, GemmBackend::OpenBLAS};
  const std::vector<DType> dtypes = {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0};
  const std::vector<int> thread_counts = {1, 2};

  for (const Shape3& s : shapes) {
    const Tensor x = random_tensor({s.M, s.K}, 1);
    const Tensor dy = random_tensor({s.M, s.N}, 2);
    const Tensor w32 = random_tensor({s.N, s.K}, 3);
    Tensor y = Tensor::zeros({s.M, s.N}), dx = Tensor::zeros({s.M, s.K});
    for (DType dt : dtypes) {
      const Tensor w = w32.to(dt);
      for (int threads : thread_counts) {
        set_num_threads(threads);
        for (GemmBackend b : backends) {
          set_gemm_backend(b);
          std::vector<bool> native_modes = {false};
          if (dt == DType::BF16 && b == GemmBackend::OneDNN && gemm_bf16_native_supported())
            native_modes = {true, false};
          for (bool native : native_modes) {
            set_gemm_bf16_mode(native ? Bf16Mode::Native : Bf16Mode::F32Panels);
            const std::string path = dt == DType::F32    ? "f32"
                                     : dt == DType::BF16 ? bf16_path_name(gemm_bf16_path())
                                                         : "f32-panels";
            for (const char* op : {"x_wt", "dy_w"}) {
              const bool fwd = !std::strcmp(op, "x_wt");
              if (quick && !fwd) continue;
              const Timing t = time_it(
                  [&] {
                    if (fwd)
                      matmul_x_wt(x.data<float>(), s.M, w, y.data<float>(), 0.0f);
                    else
                      matmul_dy_w(dy.data<float>(), s.M, w, dx.data<float>(), 0.0f);
                  },
                  reps);
              const double flop = 2.0 * double(s.M) * double(s.K) * double(s.N);
              rows.push_back({{"M", s.M},
                              {"K", s.K},
                              {"N", s.N},
                              {"op", op},
                              {"dtype", dtype_name(dt)},
                              {"backend", gemm_backend_name(b)},
                              {"path", path},
                              {"threads", threads},
                              {"gflops", round1(flop / t.best_s / 1e9)},
                              {"gflops_median", round1(flop / t.median_s / 1e9)},
                              {"gflops_cpu", round1(flop * threads / t.best_cpu_s / 1e9)},
                              {"ms", round1(t.best_s * 1e3)}});
            }
          }
        }
      }
    }
  }

  // The LoRA branch's thin products (r = 8, hidden 896, 512 tokens), f32.
  struct Thin {
    const char* name;
    bool ta, tb;
    int64_t M, N, K;
  };
  const std::vector<Thin> thin = {{"lora_x_at", false, true, 512, 8, 896},
                                  {"lora_u_bt", false, true, 512, 896, 8},
                                  {"lora_da", true, false, 8, 896, 512},
                                  {"lora_db", true, false, 896, 8, 512}};
  const Tensor a = random_tensor({1 << 20}, 4), bm = random_tensor({1 << 20}, 5);
  Tensor c = Tensor::zeros({1 << 20});
  for (const Thin& g : thin) {
    for (int threads : thread_counts) {
      set_num_threads(threads);
      for (GemmBackend b : backends) {
        set_gemm_backend(b);
        const int64_t lda = g.ta ? g.M : g.K, ldb = g.tb ? g.K : g.N;
        const Timing t = time_it(
            [&] {
              for (int i = 0; i < 10; ++i)
                gemm_f32(g.ta, g.tb, g.M, g.N, g.K, 1.0f, a.data<float>(), lda, bm.data<float>(),
                         ldb, 1.0f, c.data<float>(), g.N);
            },
            reps);
        const double flop = 10 * 2.0 * double(g.M) * double(g.N) * double(g.K);
        rows.push_back({{"M", g.M},
                        {"K", g.K},
                        {"N", g.N},
                        {"op", g.name},
                        {"dtype", "f32"},
                        {"backend", gemm_backend_name(b)},
                        {"path", "f32"},
                        {"threads", threads},
                        {"gflops", round1(flop / t.best_s / 1e9)},
                        {"gflops_median", round1(flop / t.median_s / 1e9)},
                        {"gflops_cpu", round1(flop * threads / t.best_cpu_s / 1e9)},
                        {"us", round1(t.best_s / 10 * 1e6)}});
      }
    }
  }
  out["rows"] = rows;
  if (peer) {
    set_gemm_backend(GemmBackend::OneDNN);
    set_gemm_bf16_mode(Bf16Mode::Auto);
    const std::string default_bf16_path = bf16_path_name(gemm_bf16_path());
    nlohmann::json p = run_torch_peer(reps, quick);
    if (p.is_object() && p.contains("rows")) {
      // ours: the default choice (oneDNN; bf16 on its automatic path) for the same product.
      for (auto& pr : p["rows"]) {
        const std::string path = pr["dtype"] == "f32" ? "f32" : default_bf16_path;
        for (const auto& r : rows) {
          if (r["M"] == pr["M"] && r["K"] == pr["K"] && r["N"] == pr["N"] && r["op"] == pr["op"] &&
              r["dtype"] == pr["dtype"] && r["threads"] == pr["threads"] &&
              r["backend"] == "onednn" && r["path"] == path)
            pr["ratio"] =
                std::round(r["gflops"].get<double>() / pr["gflops"].get<double>() * 100) / 100;
        }
      }
    }
    out["peer"] = p;
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
