// AdamW (Loshchilov & Hutter 2019) exactly as torch.optim.AdamW computes it:
//   θ ← θ − lr·λ·θ;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   θ ← θ − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + ε)
// over the ParamStore's flat buffers (moments in the same layout).
#pragma once

#include "autograd/params.h"

namespace peft {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
};

class AdamW {
 public:
  AdamW(ParamStore& params, AdamWConfig config);
  void step(float lr);  // one update from params.grads()
  int64_t steps() const { return t_; }
  Tensor& m() { return m_; }
  Tensor& v() { return v_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  ParamStore& params_;
  AdamWConfig config_;
  Tensor m_, v_;
  int64_t t_ = 0;
};

}  // namespace peft
