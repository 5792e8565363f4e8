// peft classify: PET scoring of classification records. Per record the label probabilities
// (softmax over the class scores, objectives/pet.h); with labels in the data, accuracy, macro-F1
// and a confusion matrix. Several --pattern flags make an ensemble: the class scores of the
// patterns are averaged, s = Σ_i w_i s_i / Σ_i w_i (w_i = 1, or --pattern-weights, e.g. each
// pattern's training accuracy). --adapter: none (zero-shot), one for every pattern, or one per
// pattern in order. Without --pattern, a sequence-classification adapter (`peft train --task
// seq-cls`: adapter_config.json with task_type SEQ_CLS and id2label) scores the records with its
// head (objectives/seq_cls.cpp).
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/validate.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

struct ClassifyArgs {
  std::string model, data, verbalizer, base_dtype, distill_out;
  double temperature = 2;
  std::vector<std::string> adapters, patterns;
  std::vector<double> weights;
  int64_t max_len = 512;
  bool json = false;
};

void print_confusion(const api::ClassifyResult& m) {
  size_t width = 9;
  for (const std::string& l : m.labels) width = std::max(width, l.size() + 1);
  std::string line = fmt::format("{:<{}}", "true\\pred", width);
  for (const std::string& l : m.labels) line += fmt::format("{:>{}}", l, width);
  std::fprintf(stderr, "%s\n", line.c_str());
  for (size_t i = 0; i < m.labels.size(); ++i) {
    line = fmt::format("{:<{}}", m.labels[i], width);
    for (int64_t c : m.confusion[i]) line += fmt::format("{:>{}}", c, width);
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

int report(const ClassifyArgs& a, const api::ClassifyResult& m) {
  const size_t n = std::max<size_t>(1, a.patterns.size());
  const bool labelled = m.labelled > 0;
  if (labelled) {
    std::fprintf(stderr, "%zu records, %lld labelled%s: accuracy %.4f  macro-F1 %.4f  loss %.6f\n",
                 m.probabilities.size(), (long long)m.labelled,
                 n > 1 ? fmt::format(", ensemble of {} patterns", n).c_str() : "", *m.accuracy,
                 *m.macro_f1, *m.loss);
    print_confusion(m);
  }
  if (a.json) {
    nlohmann::ordered_json out;
    nlohmann::ordered_json predictions = nlohmann::ordered_json::array();
    for (size_t r = 0; r < m.probabilities.size(); ++r) {
      nlohmann::ordered_json probs;
      for (size_t k = 0; k < m.labels.size(); ++k) probs[m.labels[k]] = m.probabilities[r][k];
      predictions.push_back(
          {{"label", m.predictions[r]}, {"probs", probs}, {"scores", m.scores[r]}});
    }
    out["predictions"] = predictions;
    if (labelled) {
      out["accuracy"] = *m.accuracy;
      out["macro_f1"] = *m.macro_f1;
      out["loss"] = *m.loss;
      out["labels"] = m.labels;
      out["confusion"] = m.confusion;
      if (n > 1) out["pattern_accuracies"] = m.pattern_accuracies;
    }
    std::printf("%s\n", out.dump().c_str());
  } else if (!labelled) {
    for (size_t r = 0; r < m.probabilities.size(); ++r) {
      std::string line;
      for (size_t k = 0; k < m.labels.size(); ++k)
        line += fmt::format("{}{} {:.4f}", k ? "  " : "", m.labels[k], m.probabilities[r][k]);
      std::printf("%s\n", line.c_str());
    }
  }
  return 0;
}

int run_classify(const ClassifyArgs& a) {
  const size_t n = a.patterns.size();
  if (n > 0 && a.verbalizer.empty()) throw api::Error("--pattern needs --verbalizer");
  if (a.adapters.size() > 1 && a.adapters.size() != n)
    throw api::Error(fmt::format(
        "--adapter given {} times for {} patterns: give none, one, or one per --pattern",
        a.adapters.size(), n));
  if (!a.weights.empty() && a.weights.size() != n)
    throw api::Error(
        fmt::format("--pattern-weights has {} values for {} patterns", a.weights.size(), n));
  api::Model model = api::Model::load(a.model, {.base_dtype = a.base_dtype});
  const api::ModelInfo info = model.info();
  if (!info.has_tokenizer)
    throw api::Error(a.model + ": peft classify needs the model folder's tokenizer");
  api::ClassifyOptions o;
  o.patterns = a.patterns;
  o.verbalizer = a.verbalizer;
  o.pattern_weights = a.weights;
  o.max_len = a.max_len;
  o.distill_out = a.distill_out;
  o.distill_temperature = a.temperature;
  if (n == 0) {  // a sequence-classification head: one adapter's, or the model folder's
    if (a.adapters.size() > 1 || (a.adapters.empty() && info.sequence_classes.empty()))
      throw api::Error(
          "peft classify needs --pattern and --verbalizer (PET), exactly one --adapter trained "
          "with --task seq-cls, or a *ForSequenceClassification --model folder");
    if (!a.verbalizer.empty() || !a.weights.empty())
      throw api::Error("--verbalizer / --pattern-weights need --pattern");
  }
  if (a.adapters.size() > 1)
    o.pattern_adapters = a.adapters;  // one per pattern
  else
    model.load_adapters(a.adapters);  // none, or one for every pattern
  return report(a, model.classify(a.data, o));
}

Runner setup_classify(CLI::App& app) {
  auto a = std::make_shared<ClassifyArgs>();
  app.add_option("--model", a->model, "model folder (Hugging Face layout)")
      ->required()
      ->type_name("DIR")
      ->group("Model");
  app.add_option("--adapter", a->adapters,
                 "adapter folder (any method): one for all patterns, or one per --pattern")
      ->type_name("DIR")
      ->group("Model");
  app.add_option("--base-dtype", a->base_dtype, "convert the frozen matrices at load")
      ->check(CLI::IsMember({"f32", "bf16", "q8_0", "q4_0"}))
      ->group("Model");
  app.add_option("--data", a->data, "records {\"text\", \"text_b\"?, \"label\"?} (JSONL or .json)")
      ->required()
      ->type_name("FILE")
      ->group("Data");
  app.add_option("--pattern", a->patterns,
                 "PET pattern, e.g. \"{text} It was {mask}.\"; repeat for an ensemble")
      ->type_name("TEXT")
      ->group("PET");
  app.add_option("--verbalizer", a->verbalizer, "JSON label -> word(s), inline or a file")
      ->type_name("JSON|FILE")
      ->group("PET");
  app.add_option("--pattern-weights", a->weights,
                 "ensemble weights, one per --pattern (e.g. their training accuracies)")
      ->delimiter(',')
      ->type_name("W,W,...")
      ->group("PET");
  app.add_option("--distill-out", a->distill_out,
                 "write --data with the ensemble's soft labels at --temperature (JSONL), to "
                 "distil into one model: peft train --task seq-cls|pet --data FILE")
      ->type_name("FILE")
      ->group("Output");
  app.add_option("--temperature", a->temperature, "distillation temperature (PET: 2)")
      ->check(number_in({.lo = 0, .hi = {}, .lo_open = true}))
      ->group("Output");
  app.add_option("--max-len", a->max_len, "truncate {text} / {text_b} to fit this many tokens")
      ->check(at_least(2))
      ->group("Data");
  app.add_flag("--json", a->json,
               "print {\"predictions\", \"accuracy\", \"macro_f1\", \"confusion\"} as one JSON "
               "object")
      ->group("Output");
  return [a]() { return run_classify(*a); };
}

PEFT_COMMAND("classify",
             "classify records: PET patterns and verbalizers, or a seq-cls adapter's head",
             setup_classify);

}  // namespace
}  // namespace peft::cli
