// peft model-oracle (hidden; for the reference tests in tests/python): runs a model on the
// batch in an inputs safetensors file and writes what the Python side compares against
// transformers: logits, the loss, and with --grads the gradient of the loss with respect to
// every weight (the full fine-tuning path: all base weights trainable, f32).
#include <nlohmann/json.hpp>

#include "autograd/params.h"
#include "autograd/tape.h"
#include "cli/command.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/method.h"

namespace peft::cli {
namespace {

struct OracleArgs {
  std::string model, inputs, out, base_dtype;
  std::vector<std::string> adapters;
  bool grads = false;
};

int run_oracle(const OracleArgs& a) {
  LoadOptions opts;
  if (!a.base_dtype.empty()) opts.base_dtype = dtype_from_name(a.base_dtype);
  std::unique_ptr<Model> model = load_model(a.model, opts);
  const SafetensorsFile in(a.inputs);
  ModelInputs batch;
  batch.input_ids = in.get("input_ids").clone();
  if (in.contains("attention_mask")) batch.attention_mask = in.get("attention_mask").clone();
  if (in.contains("token_type_ids")) batch.token_type_ids = in.get("token_type_ids").clone();
  Tensor labels = in.contains("labels") ? in.get("labels").clone() : batch.input_ids.clone();

  std::unique_ptr<MethodSet> methods;
  if (!a.adapters.empty()) {
    methods = std::make_unique<MethodSet>(*model);
    methods->attach_folders(a.adapters);
  }
  ModelHooks* hooks = methods ? methods->hooks() : nullptr;
  // --grads: with adapters, the gradients of the adapters' parameters (the base stays frozen);
  // without, of every base weight (full fine-tuning).
  ParamStore full;
  if (a.grads && !methods) model->make_trainable(full);
  ParamStore& params = methods ? methods->params() : full;
  std::vector<std::pair<std::string, Tensor>> out;
  {
    Tape tape;
    const Var hidden = model->forward(batch, {.hooks = hooks});
    {
      NoGradGuard no_grad;
      out.emplace_back("logits", model->logits(hidden)->value);
    }
    CrossEntropyStats stats;
    const Var loss = model->loss(hidden, labels, {}, &stats);
    out.emplace_back("loss", loss->value.view({1}));
    out.emplace_back("loss_sum", Tensor::from_vector({float(stats.sum)}, {1}));
    out.emplace_back("count", Tensor::from_vector({float(stats.count)}, {1}));
    if (a.grads) tape.backward(loss);
  }
  if (a.grads)
    for (const auto& e : params.entries()) out.emplace_back("grad." + e.name, e.var->grad);
  save_safetensors(a.out, out);
  return 0;
}

Runner setup_oracle(CLI::App& app) {
  app.group("");  // hidden from --help: a test tool
  auto a = std::make_shared<OracleArgs>();
  app.add_option("--model", a->model)->required();
  app.add_option("--inputs", a->inputs,
                 "safetensors with input_ids [, attention_mask, labels, token_type_ids]")
      ->required();
  app.add_option("--out", a->out)->required();
  app.add_option("--base-dtype", a->base_dtype);
  app.add_option("--adapter", a->adapters, "adapter folder to apply; repeat to stack");
  app.add_flag("--grads", a->grads, "also write grad.NAME for every weight");
  return [a]() { return run_oracle(*a); };
}

PEFT_COMMAND("model-oracle", "test tool: logits, loss and weight gradients of a batch",
             setup_oracle);

}  // namespace
}  // namespace peft::cli
