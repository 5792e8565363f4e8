// peft classify: PET scoring of classification records. Per record the label probabilities
// (softmax over the class scores, objectives/pet.h); with labels in the data, accuracy, macro-F1
// and a confusion matrix. Several --pattern flags make an ensemble: the class scores of the
// patterns are averaged, s = Σ_i w_i s_i / Σ_i w_i (w_i = 1, or --pattern-weights, e.g. each
// pattern's training accuracy). --adapter: none (zero-shot), one for every pattern, or one per
// pattern in order. Without --pattern, a sequence-classification adapter (`peft train --task
// seq-cls`: adapter_config.json with task_type SEQ_CLS and id2label) scores the records with its
// head (objectives/seq_cls.cpp).
#include <cmath>
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/setup.h"
#include "cli/validate.h"
#include "io/files.h"
#include "objectives/pet.h"
#include "objectives/seq_cls.h"

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

void print_confusion(const EvalMetrics& m) {
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

int report(const ClassifyArgs& a, const EvalMetrics& m, const std::vector<EvalMetrics>& members);

BatchBuilder classify_batches(Objective& objective, const LoadedModel& loaded,
                              const ClassifyArgs& a) {
  BatchingOptions batching;
  batching.shuffle = false;
  batching.max_len = a.max_len;
  batching.shifted = false;
  batching.pad_id = loaded.tokenizer->pad_id() >= 0 ? loaded.tokenizer->pad_id() : 0;
  return BatchBuilder(objective.read(a.data, true), batching);
}

// The class names of a seq-cls adapter folder (id2label in adapter_config.json), or an error
// saying what classify needs.
std::vector<std::string> seq_cls_labels(const std::string& dir) {
  const nlohmann::json config = read_json_file(join_path(dir, "adapter_config.json"));
  if (config.value("task_type", "") != "SEQ_CLS" || !config.contains("id2label") ||
      !config["id2label"].is_object())
    fail(
        "{}: not a sequence-classification adapter (adapter_config.json has no task_type "
        "SEQ_CLS with id2label); for PET give --pattern and --verbalizer",
        dir);
  const nlohmann::json& id2label = config["id2label"];
  std::vector<std::string> labels(id2label.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string key = std::to_string(i);
    if (!id2label.contains(key) || !id2label[key].is_string())
      fail("{}: adapter_config.json id2label has no string for class {}", dir, key);
    labels[i] = id2label[key].get<std::string>();
  }
  return labels;
}

EvalMetrics classify_seq_cls(const ClassifyArgs& a, LoadedModel& loaded) {
  const bool folder_head = !seq_cls_folder_labels(loaded.model->config(), a.model).empty();
  if (a.adapters.size() > 1 || (a.adapters.empty() && !folder_head))
    fail(
        "peft classify needs --pattern and --verbalizer (PET), exactly one --adapter trained "
        "with --task seq-cls, or a *ForSequenceClassification --model folder");
  if (!a.verbalizer.empty() || !a.weights.empty())
    fail("--verbalizer / --pattern-weights need --pattern");
  ObjectiveConfig config;
  // The head lives in the adapter folder (a stacked run's: its first method's).
  const std::string head_dir = a.adapters.empty() ? "" : adapter_folders(a.adapters[0]).front();
  if (!a.adapters.empty()) config.labels = seq_cls_labels(head_dir);
  config.max_len = a.max_len;
  std::unique_ptr<MethodSet> methods = attach_adapter_folders(*loaded.model, a.adapters);
  std::unique_ptr<Objective> head =
      make_seq_cls_objective({loaded.model.get(), loaded.tokenizer.get(), a.model}, config);
  ParamStore params;
  head->declare(params);
  params.allocate();
  if (a.adapters.empty()) {
    Rng unused(0, 0);
    head->initialize(params, unused);  // the folder's head
  } else {
    head->load(params, head_dir);
  }
  BatchBuilder data = classify_batches(*head, loaded, a);
  return head->evaluate(data, methods ? methods->hooks() : nullptr);
}

// Distillation data (PET / iPET): every record of --data with the ensemble's distribution at
// temperature T, q = softmax(s / T), as "soft_labels" (objectives/classification.h trains on it).
void write_distillation(const ClassifyArgs& a, const EvalMetrics& m) {
  const std::vector<ClassRecord> records = read_class_records(a.data);
  PEFT_CHECK(records.size() == m.scores.size(), "distillation: {} records, {} scores",
             records.size(), m.scores.size());
  std::string text;
  for (size_t r = 0; r < records.size(); ++r) {
    const std::vector<double>& s = m.scores[r];
    const double top = *std::max_element(s.begin(), s.end()) / a.temperature;
    double z = 0;
    for (double v : s) z += std::exp(v / a.temperature - top);
    nlohmann::ordered_json out;
    out["text"] = records[r].text;
    if (!records[r].text_b.empty()) out["text_b"] = records[r].text_b;
    nlohmann::ordered_json soft;
    for (size_t k = 0; k < s.size(); ++k)
      soft[m.labels[k]] = std::exp(s[k] / a.temperature - top) / z;
    out["soft_labels"] = soft;
    text += out.dump() + "\n";
  }
  write_file_atomic(a.distill_out, text);
}

int run_classify(const ClassifyArgs& a) {
  const size_t n = a.patterns.size();
  if (n > 0 && a.verbalizer.empty()) fail("--pattern needs --verbalizer");
  if (a.adapters.size() > 1 && a.adapters.size() != n)
    fail("--adapter given {} times for {} patterns: give none, one, or one per --pattern",
         a.adapters.size(), n);
  if (!a.weights.empty() && a.weights.size() != n)
    fail("--pattern-weights has {} values for {} patterns", a.weights.size(), n);
  LoadedModel loaded = load_model_folder(a.model, a.base_dtype);
  if (!loaded.tokenizer) fail("{}: peft classify needs the model folder's tokenizer", a.model);
  if (n == 0) return report(a, classify_seq_cls(a, loaded), {});
  ObjectiveConfig config;
  config.verbalizer = a.verbalizer;
  config.max_len = a.max_len;
  std::vector<EvalMetrics> members;
  for (size_t i = 0; i < n; ++i) {
    std::unique_ptr<MethodSet> methods;
    if (!a.adapters.empty())
      methods = attach_adapter_folders(*loaded.model, {a.adapters[a.adapters.size() == 1 ? 0 : i]});
    PetObjective pet({loaded.model.get(), loaded.tokenizer.get(), a.model}, config, a.patterns[i]);
    BatchBuilder data = classify_batches(pet, loaded, a);
    members.push_back(pet.evaluate(data, methods ? methods->hooks() : nullptr));
  }
  // The ensemble: weighted mean of the members' class scores.
  double total_weight = 0;
  std::vector<std::vector<double>> scores(members[0].scores.size(),
                                          std::vector<double>(members[0].labels.size(), 0.0));
  for (size_t i = 0; i < n; ++i) {
    const double w = a.weights.empty() ? 1.0 : a.weights[i];
    total_weight += w;
    for (size_t r = 0; r < scores.size(); ++r)
      for (size_t k = 0; k < scores[r].size(); ++k) scores[r][k] += w * members[i].scores[r][k];
  }
  if (!(total_weight > 0)) fail("--pattern-weights must sum to a positive number");
  for (auto& row : scores)
    for (double& v : row) v /= total_weight;
  return report(a, classification_metrics(members[0].labels, scores, members[0].targets), members);
}

int report(const ClassifyArgs& a, const EvalMetrics& m, const std::vector<EvalMetrics>& members) {
  const size_t n = std::max<size_t>(1, members.size());
  if (!a.distill_out.empty()) write_distillation(a, m);
  const bool labelled = m.count > 0;
  if (labelled) {
    std::fprintf(stderr, "%zu records, %lld labelled%s: accuracy %.4f  macro-F1 %.4f  loss %.6f\n",
                 m.probabilities.size(), (long long)m.count,
                 n > 1 ? fmt::format(", ensemble of {} patterns", n).c_str() : "", m.accuracy,
                 macro_f1(m.confusion), m.loss);
    print_confusion(m);
  }
  if (a.json) {
    nlohmann::ordered_json out;
    nlohmann::ordered_json predictions = nlohmann::ordered_json::array();
    for (size_t r = 0; r < m.probabilities.size(); ++r) {
      const std::vector<double>& p = m.probabilities[r];
      nlohmann::ordered_json probs;
      size_t best = 0;
      for (size_t k = 0; k < p.size(); ++k) {
        probs[m.labels[k]] = p[k];
        if (p[k] > p[best]) best = k;
      }
      predictions.push_back({{"label", m.labels[best]}, {"probs", probs}, {"scores", m.scores[r]}});
    }
    out["predictions"] = predictions;
    if (labelled) {
      out["accuracy"] = m.accuracy;
      out["macro_f1"] = macro_f1(m.confusion);
      out["loss"] = m.loss;
      out["labels"] = m.labels;
      out["confusion"] = m.confusion;
      if (n > 1) {
        std::vector<double> accs;
        for (const EvalMetrics& e : members) accs.push_back(e.accuracy);
        out["pattern_accuracies"] = accs;
      }
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
