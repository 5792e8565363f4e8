// Factory of the sequence-classification objective (objectives/seq_cls.cpp).
#pragma once

#include "objectives/objective.h"

namespace peft {

std::unique_ptr<Objective> make_seq_cls_objective(const ObjectiveContext& ctx,
                                                  const ObjectiveConfig& cfg);

}  // namespace peft
