// Trainable parameters in one contiguous f32 buffer with a name -> (offset, shape) table; the
// gradients (and, in train/, the AdamW moments) use the same layout, so the optimizer is one
// loop, zeroing one memset and a checkpoint one table (llm.c's memory discipline).
// Use: declare() every parameter, allocate() once, then get() the Vars.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "autograd/tape.h"

namespace peft {

class ParamStore {
 public:
  struct Entry {
    std::string name;
    Shape shape;
    int64_t offset = 0;  // in elements
    int64_t numel = 0;
    Var var;  // value and grad are views into values() / grads()
  };

  // Throws Error on a duplicate name or after allocate().
  void declare(const std::string& name, Shape shape);
  void allocate();
  bool allocated() const { return values_.defined(); }

  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  const Var& get(const std::string& name) const;
  const std::vector<Entry>& entries() const { return entries_; }
  int64_t size() const { return total_; }

  Tensor& values() { return values_; }  // f32[size()]
  Tensor& grads() { return grads_; }    // f32[size()]
  void zero_grad() { grads_.zero(); }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
  int64_t total_ = 0;
  Tensor values_, grads_;
};

}  // namespace peft
