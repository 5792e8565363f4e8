// Reverse-mode automatic differentiation over coarse ops (llm.c-style explicit backward functions,
// recorded on a tape). An op that runs while a Tape is active and has an input that requires a
// gradient records a closure; Tape::backward runs the closures in reverse. Inputs that do not
// require gradients (frozen weights, data) never get gradient buffers, and ops skip the work for
// them (a frozen linear computes dX but never dW).
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft {

struct Node {
  Tensor value;
  Tensor grad;  // same shape as value, f32; allocated (zeroed) on first accumulation
  bool requires_grad = false;
  std::string name;

  // The gradient buffer, allocated zero-filled on first use. Gradients accumulate (+=).
  Tensor& grad_buffer();
};
using Var = std::shared_ptr<Node>;

// A value that never receives a gradient (data, frozen weights).
Var constant(Tensor value, std::string name = {});
// A value that receives a gradient in backward (grad allocated on demand).
Var variable(Tensor value, std::string name = {});

class Tape {
 public:
  Tape();
  ~Tape();
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  void record(std::function<void()> backward_fn) { entries_.push_back(std::move(backward_fn)); }
  // Seeds d(loss)/d(loss) = seed (loss must have one element) and runs the tape in reverse,
  // releasing each closure (and the activations it holds) once it has run. The tape is empty
  // afterwards.
  void backward(const Var& loss, float seed = 1.0f);
  // The same from a non-scalar output with a given upstream gradient (vector-Jacobian product).
  void backward(const Var& output, const Tensor& output_grad);
  void clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }

 private:
  void run_reverse();
  std::vector<std::function<void()>> entries_;
  Tape* previous_;
};

// The innermost live Tape on this thread, or nullptr (no recording, e.g. inference).
Tape* active_tape();

// Turns recording off in a scope even when a Tape is live (evaluation inside training).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when an op over these inputs must record a backward closure.
bool needs_grad(std::initializer_list<const Var*> inputs);
// The output node of an op: requires_grad when needs_grad(inputs).
Var make_output(Tensor value, bool requires_grad);

}  // namespace peft
