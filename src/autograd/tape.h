// Reverse-mode automatic differentiation over coarse ops (llm.c-style explicit backward functions,
// recorded on a tape). An op that runs while a Tape is active and has an input that requires a
// gradient records a closure; Tape::backward runs the closures in reverse. Inputs that do not
// require gradients (frozen weights, data) never get gradient buffers, and ops skip the work for
// them (a frozen linear computes dX but never dW).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>
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

// A region of a watched gradient buffer that backward writes: [offset, offset + numel) (in
// floats), and the tape position of the first recorded op that reads its node. Closures at that
// position or later are the only ones that can write it, so once backward has run them (closures
// left <= first_use) the region's gradient is final.
struct GradientUse {
  int64_t offset = 0, numel = 0;
  size_t first_use = 0;
};

// Told during backward when gradients inside one buffer are final, so their all-reduce can
// start while backward continues (train/data_parallel.h). Regions of the buffer that no recorded
// op reads are final from the start.
class GradientWatch {
 public:
  virtual ~GradientWatch() = default;
  // Before the first closure: every region the recorded ops read and how many closures run.
  virtual void plan(const std::vector<GradientUse>& uses, size_t closures) = 0;
  // Before the first closure and after each one: how many closures are still to run.
  virtual void progress(size_t closures_left) = 0;
};

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

  // Watch the gradients inside [begin, begin + numel) (a ParamStore's gradient buffer): from now
  // on every op's needs_grad notes the tape position at which it first reads a node whose
  // gradient lies there, and backward reports to `watch` (which must outlive backward). Set
  // before the forward pass that records the ops.
  void watch(const float* begin, int64_t numel, GradientWatch* watch);
  // needs_grad's note: `node` is read by the op about to be recorded.
  void note_read(const Node& node);
  bool watching() const { return watch_ != nullptr; }
  // Called by Node::grad_buffer while this tape runs backward: stops with an internal error when
  // a closure writes a watched gradient that its op never declared as an input (the region would
  // already be reported final, and its all-reduce could read a partial gradient).
  void check_write(const Tensor& grad) const;

 private:
  void run_reverse();
  std::vector<std::function<void()>> entries_;
  Tape* previous_;
  // Watched gradient buffer, and the first reader of each region (keyed by its first float).
  const float* watch_begin_ = nullptr;
  int64_t watch_numel_ = 0;
  GradientWatch* watch_ = nullptr;
  std::unordered_map<const float*, GradientUse> uses_;
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

// True when an op over these inputs must record a backward closure. Every op passes every Var its
// closure may write a gradient into (a watching Tape relies on it to know when gradients are
// final).
bool needs_grad(std::initializer_list<const Var*> inputs);
// The output node of an op: requires_grad when needs_grad(inputs).
Var make_output(Tensor value, bool requires_grad);

}  // namespace peft
