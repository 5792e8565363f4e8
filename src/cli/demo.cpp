// peft demo: the embedded default job. At this stage an engine smoke run: a frozen random layer
// W and a teacher W + ΔW with a rank-r ΔW; a LoRA branch on W learns ΔW from (x, teacher(x))
// pairs with AdamW. The loss must fall by orders of magnitude; the run prints it as it goes.
#include <chrono>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "autograd/params.h"
#include "cli/command.h"
#include "core/rng.h"
#include "ops/linear.h"
#include "train/adamw.h"

namespace peft::cli {
namespace {

struct DemoOptions {
  int64_t dim = 256, rank = 8, batch = 64, steps = 300;
  float lr = 1e-2f;
  uint64_t seed = 0;
  bool json = false;
};

// Mean squared error, with its gradient written straight into pred's grad at backward.
Var mse(const Var& pred, const Tensor& target) {
  const int64_t n = target.numel();
  const float* p = pred->value.data<float>();
  const float* t = target.data<float>();
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += double(p[i] - t[i]) * (p[i] - t[i]);
  Var loss = make_output(Tensor::from_vector({float(acc / double(n))}, {1}), pred->requires_grad);
  if (pred->requires_grad && active_tape()) {
    active_tape()->record([loss, pred, target, n]() {
      const float g = loss->grad.data<float>()[0] * 2.0f / float(n);
      float* d = pred->grad_buffer().data<float>();
      const float* p = pred->value.data<float>();
      const float* t = target.data<float>();
      for (int64_t i = 0; i < n; ++i) d[i] += g * (p[i] - t[i]);
    });
  }
  return loss;
}

int run_demo(const DemoOptions& o) {
  Rng rng(o.seed, 1);
  const int64_t d = o.dim, r = o.rank;
  Tensor w = Tensor::zeros({d, d});
  fill_normal(w, rng, 0.0f, 1.0f / std::sqrt(float(d)));
  // Teacher: W + U·V with U [d, r], V [r, d].
  Tensor u = Tensor::zeros({d, r}), v = Tensor::zeros({r, d});
  fill_normal(u, rng, 0.0f, 0.5f / std::sqrt(float(r)));
  fill_normal(v, rng, 0.0f, 1.0f / std::sqrt(float(d)));
  Tensor teacher = w.clone();
  float* pt = teacher.data<float>();
  for (int64_t i = 0; i < d; ++i)
    for (int64_t k = 0; k < r; ++k)
      for (int64_t j = 0; j < d; ++j) pt[i * d + j] += u.data<float>()[i * r + k] * v.data<float>()[k * d + j];

  ParamStore params;
  params.declare("lora_A", {r, d});
  params.declare("lora_B", {d, r});
  params.allocate();
  Tensor a = params.get("lora_A")->value;
  const float bound = 1.0f / std::sqrt(float(d));
  fill_uniform(a, rng, -bound, bound);  // B stays zero: the branch starts at the identity
  LoraBranch lora{params.get("lora_A"), params.get("lora_B"), 1.0f, 0.0f, nullptr};
  Var weight = constant(w, "weight");
  AdamW opt(params, {});

  const auto start = std::chrono::steady_clock::now();
  float first = 0, last = 0;
  for (int64_t step = 1; step <= o.steps; ++step) {
    Tensor x = Tensor::zeros({o.batch, d});
    fill_normal(x, rng, 0.0f, 1.0f);
    Tensor target = Tensor::zeros({o.batch, d});
    {
      NoGradGuard no_grad;
      target = linear(constant(x), constant(teacher))->value;
    }
    Tape tape;
    Var loss = mse(linear(constant(x), weight, nullptr, &lora), target);
    params.zero_grad();
    tape.backward(loss);
    opt.step(o.lr);
    last = loss->value.data<float>()[0];
    if (step == 1) first = last;
    if (!o.json && (step == 1 || step % 50 == 0 || step == o.steps))
      std::fprintf(stderr, "step %4lld/%lld  loss %.6f\n", (long long)step, (long long)o.steps, last);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json out{{"task", "lora-fit-low-rank-delta"}, {"steps", o.steps},
                     {"first_loss", first}, {"final_loss", last}, {"seconds", seconds}};
  std::printf("%s\n", out.dump().c_str());
  if (!(last < first * 1e-2f)) {
    std::fprintf(stderr, "peft: error: the demo did not converge (loss %g -> %g)\n", first, last);
    return 1;
  }
  return 0;
}

Runner setup_demo(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  app.add_option("--dim", o->dim, "layer width")->check(CLI::Range(8, 4096));
  app.add_option("--rank", o->rank, "LoRA rank r")->check(CLI::Range(1, 256));
  app.add_option("--steps", o->steps, "AdamW steps")->check(CLI::Range(1, 100000));
  app.add_option("--lr", o->lr, "learning rate");
  app.add_option("--seed", o->seed, "random seed");
  app.add_flag("--json", o->json, "print only the JSON summary");
  return [o]() { return run_demo(*o); };
}

PEFT_COMMAND("demo", "run the embedded default job (engine smoke run: LoRA learns a low-rank delta)",
             setup_demo);

}  // namespace
}  // namespace peft::cli
