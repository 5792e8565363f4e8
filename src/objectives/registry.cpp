// One row per objective (STYLE.md: registries, one file each); --task picks a row.
#include "core/error.h"
#include "objectives/language_model.h"
#include "objectives/objective.h"
#include "objectives/pet.h"
#include "objectives/seq_cls.h"

namespace peft {

const std::vector<ObjectiveInfo>& objective_registry() {
  static const std::vector<ObjectiveInfo> rows = {
      {.name = "causal-lm",
       .help = "next-token loss (decoders)",
       .create = make_causal_lm_objective},
      {.name = "mlm",
       .help = "masked LM: 15% of tokens, 80/10/10 (BERT)",
       .create = make_mlm_objective},
      {.name = "pet",
       .help = "pattern + verbalizer: cross-entropy over class scores at the mask",
       .create = make_pet_objective},
      {.name = "seq-cls",
       .help = "linear head on the pooled output ([CLS] pooler / last token)",
       .create = make_seq_cls_objective},
  };
  return rows;
}

const ObjectiveInfo* find_objective(const std::string& name) {
  for (const ObjectiveInfo& o : objective_registry())
    if (o.name == name) return &o;
  return nullptr;
}

std::string objective_names() {
  std::string out;
  for (const ObjectiveInfo& o : objective_registry()) out += (out.empty() ? "" : ", ") + o.name;
  return out;
}

std::string default_objective(const Model& model) {
  return model.is_causal_lm() ? "causal-lm" : "mlm";
}

}  // namespace peft
