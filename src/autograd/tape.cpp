#include "autograd/tape.h"

#include <algorithm>

namespace peft {
namespace {
thread_local Tape* g_active_tape = nullptr;
thread_local bool g_no_grad = false;
// The tape whose backward closures run on this thread (they call grad_buffer on it).
thread_local Tape* g_backward_tape = nullptr;

const float* first_float(const Tensor& t) {
  return static_cast<const float*>(t.raw());
}
}  // namespace

Tensor& Node::grad_buffer() {
  if (!grad.defined())
    grad = Tensor::zeros(value.shape(), DType::F32);
  else if (g_backward_tape)
    g_backward_tape->check_write(grad);
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

void Tape::watch(const float* begin, int64_t numel, GradientWatch* watch) {
  watch_begin_ = begin;
  watch_numel_ = numel;
  watch_ = watch;
  uses_.clear();
}

void Tape::note_read(const Node& node) {
  if (!node.grad.defined()) return;  // parameters' gradients are views from the start
  const float* p = first_float(node.grad);
  if (p < watch_begin_ || p >= watch_begin_ + watch_numel_) return;
  // The first note is the earliest position (positions only grow); two nodes viewing the same
  // gradient (a tied head) share one entry.
  auto [it, inserted] = uses_.try_emplace(
      p, GradientUse{int64_t(p - watch_begin_), node.grad.numel(), entries_.size()});
  if (!inserted) it->second.numel = std::max(it->second.numel, node.grad.numel());
}

void Tape::check_write(const Tensor& grad) const {
  if (!watch_) return;
  const float* p = first_float(grad);
  if (p < watch_begin_ || p >= watch_begin_ + watch_numel_) return;
  // The closure running is at position entries_.size() (already popped).
  const auto it = uses_.find(p);
  PEFT_CHECK(it != uses_.end() && it->second.first_use <= entries_.size(),
             "a backward closure at tape position {} writes the gradient at offset {} of the "
             "watched buffer, which its op did not pass to needs_grad",
             entries_.size(), p - watch_begin_);
}

void Tape::run_reverse() {
  struct Running {
    Tape* previous;
    ~Running() { g_backward_tape = previous; }
  } running{g_backward_tape};
  g_backward_tape = this;
  if (watch_) {
    std::vector<GradientUse> uses;
    for (const auto& [p, use] : uses_) uses.push_back(use);
    std::sort(uses.begin(), uses.end(),
              [](const GradientUse& a, const GradientUse& b) { return a.offset < b.offset; });
    watch_->plan(uses, entries_.size());
    watch_->progress(entries_.size());
  }
  while (!entries_.empty()) {
    std::function<void()> fn = std::move(entries_.back());
    entries_.pop_back();
    fn();
    if (watch_) watch_->progress(entries_.size());
  }
  // Empty tape, no watch: the next recording starts afresh.
  watch_ = nullptr;
  uses_.clear();
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
  Tape* tape = active_tape();
  if (!tape) return false;
  bool any = false;
  for (const Var* v : inputs) {  // every input, no early return: a watching tape notes each
    if (!v || !*v) continue;
    any = any || (*v)->requires_grad;
    if (tape->watching()) tape->note_read(**v);
  }
  return any;
}

Var make_output(Tensor value, bool requires_grad) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  n->requires_grad = requires_grad;
  return n;
}

}  // namespace peft
