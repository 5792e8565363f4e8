// Fine-tunes a LoRA adapter with peft.cpp's C++ API, then generates with it and exports it for
// llama.cpp:
//   train_lora MODEL_DIR DATA.jsonl OUT_DIR ["prompt"]
#include <peft/peft.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL_DIR DATA.jsonl OUT_DIR [PROMPT]\n", argv[0]);
    return 2;
  }
  const std::string prompt = argc > 4 ? argv[4] : "What sound does a cow make?\n\n";
  try {
    peft::api::Model model = peft::api::Model::load(argv[1]);
    model.create_adapter("lora", {{"r", "8"}, {"lora-alpha", "16"}});

    peft::api::TrainOptions options;
    options.data = argv[2];
    options.epochs = 3;
    options.lr = 3e-3f;
    const peft::api::TrainResult r = model.train(options, [](const peft::api::StepInfo& s) {
      std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f", (long long)s.step,
                   (long long)s.total_steps, s.loss);
      return true;  // false would stop training here
    });
    std::fprintf(stderr, "\ntrained %lld steps, final loss %.4f\n", (long long)r.steps,
                 r.final_loss);

    const std::string out = argv[3];
    model.save_adapter(out + "/adapter");
    model.export_gguf(out + "/adapter.gguf");

    std::cout << prompt;
    model.generate(prompt, {}, [](const std::string& piece) {
      std::cout << piece << std::flush;
      return true;
    });
    std::cout << "\n";
  } catch (const peft::api::Error& e) {
    std::fprintf(stderr, "train_lora: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
