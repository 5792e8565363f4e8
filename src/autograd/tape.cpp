#include "autograd/tape.h"

namespace peft {
namespace {
thread_local Tape* g_active_tape = nullptr;
thread_local bool g_no_grad = false;
}  // namespace

Tensor& Node::grad_buffer() {
  if (!grad.defined()) grad = Tensor::zeros(value.shape(), DType::F32);
  return grad;
}

Var constant(Tensor value, std::string name) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  n->name = std::move(name);
  return n;
}

Var variable(Tensor value, std::string name) {
  Var n = constant(std::move(value), std::move(name));
  n->requires_grad = true;
  return n;
}

Tape::Tape() : previous_(g_active_tape) {
  g_active_tape = this;
}

Tape::~Tape() {
  g_active_tape = previous_;
}

void Tape::backward(const Var& loss, float seed) {
  PEFT_CHECK(loss->value.numel() == 1, "backward from a non-scalar {}", loss->value.describe());
  PEFT_CHECK(loss->requires_grad, "backward from a loss that does not depend on any parameter");
  loss->grad_buffer().data<float>()[0] += seed;
  run_reverse();
}

void Tape::backward(const Var& output, const Tensor& output_grad) {
  PEFT_CHECK(output->requires_grad, "backward from an output that depends on no parameter");
  PEFT_CHECK(output_grad.shape() == output->value.shape(), "upstream {} for output {}",
             output_grad.describe(), output->value.describe());
  Tensor& g = output->grad_buffer();
  const float* src = output_grad.data<float>();
  float* dst = g.data<float>();
  for (int64_t i = 0, n = g.numel(); i < n; ++i) dst[i] += src[i];
  run_reverse();
}

void Tape::run_reverse() {
  while (!entries_.empty()) {
    std::function<void()> fn = std::move(entries_.back());
    entries_.pop_back();
    fn();
  }
}

Tape* active_tape() {
  return g_no_grad ? nullptr : g_active_tape;
}

NoGradGuard::NoGradGuard() : previous_(g_no_grad) {
  g_no_grad = true;
}

NoGradGuard::~NoGradGuard() {
  g_no_grad = previous_;
}

bool needs_grad(std::initializer_list<const Var*> inputs) {
  if (!active_tape()) return false;
  for (const Var* v : inputs)
    if (v && *v && (*v)->requires_grad) return true;
  return false;
}

Var make_output(Tensor value, bool requires_grad) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  n->requires_grad = requires_grad;
  return n;
}

}  // namespace peft
