#include "autograd/params.h"

namespace peft {

void ParamStore::declare(const std::string& name, Shape shape) {
  if (allocated()) fail("parameter {} declared after the parameter buffer was allocated", name);
  if (contains(name)) fail("parameter {} declared twice", name);
  Entry e;
  e.name = name;
  e.numel = shape_numel(shape);
  e.shape = std::move(shape);
  e.offset = total_;
  // Keep every parameter 16-float (64-byte) aligned for the SIMD kernels.
  total_ += (e.numel + 15) / 16 * 16;
  index_[name] = entries_.size();
  entries_.push_back(std::move(e));
}

void ParamStore::allocate() {
  PEFT_CHECK(!allocated(), "ParamStore allocated twice");
  values_ = Tensor::zeros({total_});
  grads_ = Tensor::zeros({total_});
  for (Entry& e : entries_) {
    auto node = std::make_shared<Node>();
    node->name = e.name;
    node->requires_grad = true;
    node->value = values_.slice_rows(e.offset, e.offset + e.numel).view(e.shape);
    node->grad = grads_.slice_rows(e.offset, e.offset + e.numel).view(e.shape);
    e.var = node;
  }
}

const Var& ParamStore::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail("no trainable parameter named {}", name);
  PEFT_CHECK(allocated(), "ParamStore::get({}) before allocate()", name);
  return entries_[it->second].var;
}

}  // namespace peft
