// Factory of the sequence-classification objective (objectives/seq_cls.cpp).
#pragma once

#include <string>
#include <vector>

#include "io/hf_config.h"
#include "objectives/objective.h"

namespace peft {

// The classes (config.json id2label, else LABEL_0 … by num_labels) of a model folder whose
// architectures name a *ForSequenceClassification class; empty for any other folder.
std::vector<std::string> seq_cls_folder_labels(const HFConfig& config, const std::string& dir);

std::unique_ptr<Objective> make_seq_cls_objective(const ObjectiveContext& ctx,
                                                  const ObjectiveConfig& cfg);

}  // namespace peft
