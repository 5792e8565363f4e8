// Bottleneck adapters (Houlsby et al. 2019, Pfeiffer et al. 2020) as AdapterHub (`adapters` 1.3.0)
// defines, places and stores them (FORMATS.md, "AdapterHub bottleneck adapters"):
//   A(t) = s · W_up·act(W_down·t + b_down) + b_up·s   (s: scaling, a float, learned [1] or [C])
// after a sublayer with output h and input x (hook 4), h becomes
//   h' = A(t) + r,  t = LN(h + x) or h + x or h (original_ln_before, with or without the model's
//   LayerNorm), r = h (residual_before_ln true), t (false) or h + x ("post_add"),
// and the model adds the residual as always (BERT: LN(h' + x); decoders: x + h'). Houlsby
// (double_seq_bn) sits after attention and after the FFN, Pfeiffer (seq_bn) after the FFN only.
// Not mergeable: the non-linearity sits between the projections.
// Files: AdapterHub's folder — adapter_config.json {"config": {...}, hidden_size, model_class,
// model_name, model_type, name, version} and adapter.safetensors (or pytorch_adapter.bin, read
// without running any pickle code) with keys such as
// bert.encoder.layer.0.output.adapters.NAME.adapter_down.0.weight.
#pragma once

#include "peft/method.h"

namespace peft {

struct BottleneckConfig {
  std::string name = "adapter";  // AdapterHub's adapter name (part of every weight key)
  bool mh_adapter = true;        // after attention
  bool output_adapter = true;    // after the FFN
  double reduction_factor = 16;  // bottleneck = hidden // reduction_factor
  std::map<std::string, double> reduction_factor_map;  // per layer ("3", "default"); or empty
  std::string non_linearity = "swish";
  bool original_ln_before = false;
  std::string residual_before_ln = "true";  // "true", "false" or "post_add"
  std::string init_weights = "bert";        // bert | houlsby | mam_adapter
  std::string scaling = "1.0";              // a number, "learned" or "channel"
  double dropout = 0.0;
  std::vector<int64_t> leave_out;
  nlohmann::json init_weights_seed = nullptr;  // kept as written; our init uses the run's seed

  // From either AdapterHub's adapter_config.json (the nested "config") or the flat JSON the CLI
  // flags make ({"adapter_kind": "pfeiffer", "reduction_factor": 8, ...}). Options AdapterHub has
  // but this build does not implement (parallel adapters, gating, new LayerNorms, PHM layers,
  // invertible adapters, original_ln_after false) are refused naming the key.
  static BottleneckConfig from_json(const nlohmann::json& j, const std::string& source);
  // The "config" object as adapters 1.3.0 writes it: its 33 BnConfig fields.
  nlohmann::json to_adapterhub() const;
  // hidden // reduction factor of layer i (at least 1).
  int64_t bottleneck(int64_t layer, int64_t hidden) const;
  bool placed(int64_t layer) const;
};

MethodInfo bottleneck_adapter_method_info();

}  // namespace peft
