// Trains a sequence classifier the way `peft train --task seq-cls` does (one call that creates
// the adapter, writes it with its head into OUT_DIR and evaluates it), then reloads it and
// classifies the records:
//   train_classifier MODEL_DIR RECORDS.jsonl OUT_DIR
// RECORDS.jsonl holds {"text": ..., "label": ...} lines.
#include <peft/peft.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL_DIR RECORDS.jsonl OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    peft::api::TrainOptions options;
    options.method = "lora";  // "lora,prompt" stacks two methods; "full" trains every weight
    options.method_settings = {{"r", "8"}, {"target-modules", "q_proj,v_proj"}};
    options.task = "seq-cls";  // a classification head trains beside the adapter
    options.data = argv[2];
    options.eval_data = argv[2];
    options.epochs = 3;
    options.lr = 3e-3f;
    options.out_dir = argv[3];  // the adapter with its head, metrics.jsonl, loss.svg

    peft::api::TrainCallbacks callbacks;
    callbacks.on_start = [](const peft::api::TrainStart& s) {
      std::fprintf(stderr, "training %s (%s): %lld steps, %lld trainable parameters\n",
                   s.method.c_str(), s.task.c_str(), (long long)s.total_steps,
                   (long long)s.trainable_params);
    };
    callbacks.on_step = [](const peft::api::StepInfo& s) {
      std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f", (long long)s.step,
                   (long long)s.total_steps, s.loss);
      return true;  // false would stop training here
    };
    const peft::api::TrainResult r = peft::api::train(argv[1], options, callbacks);
    std::fprintf(stderr, "\nwrote %s: %s; eval accuracy %.4f\n", argv[3], r.written.c_str(),
                 r.eval_accuracy ? *r.eval_accuracy : 0.0);

    peft::api::Model model = peft::api::Model::load(argv[1]);
    model.load_adapters({argv[3]});  // the head comes with the adapter folder
    const peft::api::ClassifyResult c = model.classify(argv[2], {});
    for (size_t i = 0; i < c.predictions.size(); ++i)
      std::printf("%s\t%.4f\n", c.predictions[i].c_str(),
                  c.probabilities[i][0]);  // the first label's probability
    if (c.accuracy) std::printf("accuracy %.4f  macro-F1 %.4f\n", *c.accuracy, *c.macro_f1);
  } catch (const peft::api::Error& e) {
    std::fprintf(stderr, "train_classifier: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
