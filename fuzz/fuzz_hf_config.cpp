// libFuzzer: config.json parsing (model types, sizes, epsilons, heads) and the closed-form
// parameter count the memory guard uses.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "io/hf_config.h"
#include "models/memory.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  return peft::fuzz::run_one([&] {
    const peft::HFConfig c = peft::parse_hf_config(j, "config.json");
    peft::MemoryPlan plan;
    plan.batch = 4, plan.tokens = 512, plan.kv_tokens = 512;
    (void)peft::estimate_memory(c, plan).total();
    (void)peft::hf_config_to_json(c).dump();
  });
}
