// Activation checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"):
// y = f(x) runs without recording, so none of f's intermediate activations stay alive; backward
// runs f again on a tape of its own from the kept x and back-propagates y's gradient through it.
// Memory: x and y per wrapped block instead of every activation inside it; time: one more
// forward of the block. Exact: the recomputation sees the same x, parameters and dropout draws.
#pragma once

#include <functional>

#include "autograd/tape.h"
#include "core/rng.h"

namespace peft {

// y = f(x). With an active tape, f runs twice (now without recording, again in backward); every
// parameter f reads receives its gradient then. `dropout_rng` (may be null): the Rng f draws
// dropout masks from; the recomputation replays the draws from the position it had now. f must
// not change other state that the second run would see differently. The caller must not let a
// watching tape (data-parallel overlap) see these gradients: the wrapper's closure writes
// parameter gradients that no recorded op declared.
Var recompute_in_backward(const Var& x, std::function<Var(const Var&)> f, Rng* dropout_rng);

}  // namespace peft
