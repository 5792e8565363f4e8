// Factories of the language-modelling objectives (objectives/registry.cpp rows).
#pragma once

#include "objectives/objective.h"

namespace peft {

std::unique_ptr<Objective> make_causal_lm_objective(const ObjectiveContext& ctx,
                                                    const ObjectiveConfig& cfg);
std::unique_ptr<Objective> make_mlm_objective(const ObjectiveContext& ctx,
                                              const ObjectiveConfig& cfg);

}  // namespace peft
