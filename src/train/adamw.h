// AdamW (Loshchilov & Hutter 2019) exactly as torch.optim.AdamW computes it:
//   θ ← θ − lr·λ·θ;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   θ ← θ − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + ε)
// over the ParamStore's flat buffers (moments in the same layout). A sharded optimizer (ZeRO stage
// 1, train/data_parallel.h) updates and keeps moments for one range [begin, end) of the buffer.
#pragma once

#include "autograd/params.h"

namespace peft {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
};

class AdamW {
 public:
  // end < 0: the whole buffer.
  AdamW(ParamStore& params, AdamWConfig config, int64_t begin = 0, int64_t end = -1);
  void step(float lr);  // one update of [begin, end) from params.grads()
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  int64_t steps() const { return t_; }
  Tensor& m() { return m_; }  // f32[end - begin]: the moments of [begin, end)
  Tensor& v() { return v_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  ParamStore& params_;
  AdamWConfig config_;
  int64_t begin_ = 0, end_ = 0;
  Tensor m_, v_;
  int64_t t_ = 0;
};

}  // namespace peft
