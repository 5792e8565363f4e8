#include "objectives/classification.h"

#include <algorithm>
#include <cmath>

#include "autograd/tape.h"
#include "core/error.h"
#include "objectives/batches.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "train/data.h"

namespace peft {
namespace {

constexpr int64_t kEvalBatch = 8;

std::string label_text(const nlohmann::json& v, const std::string& path, int64_t line) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  fail("{} line {}: \"label\" must be a string or an integer, found {}", path, line, v.type_name());
}

// Σ_{rows r with a soft target} T² · Σ_l q_rl (log q_rl − log softmax(s_r / T)_l) / normaliser;
// ds_r = T · (softmax(s_r / T) − q_r) / normaliser.
Var distillation_loss(const Var& scores, const std::vector<const std::vector<float>*>& q,
                      double temperature, float normaliser) {
  const Tensor& s = scores->value;
  const int64_t B = s.dim(0), L = s.dim(1);
  Tensor grad = Tensor::zeros({B, L});
  double total = 0;
  for (int64_t r = 0; r < B; ++r) {
    if (!q[size_t(r)]) continue;
    const float* row = s.data<float>() + r * L;
    double top = row[0] / temperature;
    for (int64_t l = 1; l < L; ++l) top = std::max(top, row[l] / temperature);
    double z = 0;
    for (int64_t l = 0; l < L; ++l) z += std::exp(row[l] / temperature - top);
    for (int64_t l = 0; l < L; ++l) {
      const double log_p = row[l] / temperature - top - std::log(z);
      const double ql = (*q[size_t(r)])[size_t(l)];
      if (ql > 0) total += temperature * temperature * ql * (std::log(ql) - log_p);
      grad.data<float>()[r * L + l] =
          float(temperature * (std::exp(log_p) - ql) / double(normaliser));
    }
  }
  const bool needs = needs_grad({&scores});
  Var out = make_output(Tensor::from_vector({float(total / double(normaliser))}, {}), needs);
  if (needs)
    active_tape()->record([out, scores, grad]() {
      if (!out->grad.defined()) return;
      const float g = out->grad.data<float>()[0];
      Tensor& ds = scores->grad_buffer();
      for (int64_t i = 0; i < grad.numel(); ++i) ds.data<float>()[i] += g * grad.data<float>()[i];
    });
  return out;
}

}  // namespace

std::vector<ClassRecord> read_class_records(const std::string& path) {
  std::vector<ClassRecord> out;
  for (const JsonRecord& r : read_json_records(path)) {
    const nlohmann::json& v = r.value;
    if (!v.is_object() || !v.contains("text") || !v["text"].is_string())
      fail("{} line {}: expected a classification record {{\"text\": …, \"label\": …}}", path,
           r.line);
    ClassRecord c;
    c.line = r.line;
    c.text = v["text"].get<std::string>();
    if (v.contains("text_b") && !v["text_b"].is_null()) {
      if (!v["text_b"].is_string()) fail("{} line {}: \"text_b\" must be a string", path, r.line);
      c.text_b = v["text_b"].get<std::string>();
    }
    if (v.contains("label") && !v["label"].is_null())
      c.label = label_text(v["label"], path, r.line);
    if (v.contains("soft_labels")) {
      const nlohmann::json& soft = v["soft_labels"];
      if (!soft.is_object() || soft.empty())
        fail("{} line {}: \"soft_labels\" must be an object {{label: probability}}", path, r.line);
      for (const auto& [label, p] : soft.items()) {
        if (!p.is_number() || p.get<double>() < 0)
          fail("{} line {}: \"soft_labels\" of \"{}\" must be a probability", path, r.line, label);
        c.soft_labels.emplace_back(label, p.get<double>());
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

int32_t ClassificationObjective::class_index(const ClassRecord& r, const std::string& path) {
  if (!r.soft_labels.empty()) {
    std::vector<float> q(labels_.size(), 0.0f);
    double total = 0;
    for (const auto& [label, p] : r.soft_labels) {
      auto it = std::find(labels_.begin(), labels_.end(), label);
      if (it == labels_.end())
        fail("{} line {}: \"soft_labels\" names \"{}\", which is not one of the classes", path,
             r.line, label);
      q[size_t(it - labels_.begin())] = float(p);
      total += p;
    }
    if (std::abs(total - 1.0) > 1e-3)
      fail("{} line {}: \"soft_labels\" sum to {}, not 1", path, r.line, total);
    soft_targets_.push_back(std::move(q));
    return int32_t(labels_.size() + soft_targets_.size() - 1);
  }
  if (r.label.empty()) return kIgnoreIndex;
  auto it = std::find(labels_.begin(), labels_.end(), r.label);
  if (it == labels_.end()) {
    std::string known;
    for (const std::string& l : labels_) known += (known.empty() ? "" : ", ") + l;
    fail("{} line {}: \"label\" is \"{}\", which is not one of the classes ({})", path, r.line,
         r.label, known);
  }
  return int32_t(it - labels_.begin());
}

std::vector<Example> ClassificationObjective::read(const std::string& path, bool eval) {
  (void)eval;
  std::vector<Example> out;
  for (const ClassRecord& r : read_class_records(path)) {
    Example e = build(r, class_index(r, path));
    e.source_line = r.line;
    out.push_back(std::move(e));
  }
  return out;
}

void ClassificationObjective::fit_pieces(std::vector<int32_t>& a, std::vector<int32_t>& b,
                                         int64_t room) {
  if (room < 0) room = 0;
  while (int64_t(a.size() + b.size()) > room) (a.size() >= b.size() ? a : b).pop_back();
}

std::vector<int32_t> ClassificationObjective::last_tokens(const Batch& b) {
  std::vector<int32_t> out(size_t(b.batch));
  const int32_t* mask = b.attention_mask.data<int32_t>();
  for (int64_t r = 0; r < b.batch; ++r) {
    int32_t n = 0;
    for (int64_t t = 0; t < b.seq; ++t) n += mask[r * b.seq + t] != 0;
    out[size_t(r)] = std::max(0, n - 1);
  }
  return out;
}

std::vector<int32_t> ClassificationObjective::read_rows(const Batch& b, const Var& hidden) const {
  const int64_t width = hidden->value.dim(1), P = width - b.seq;
  const std::vector<int32_t> pos = read_positions(b);
  std::vector<int32_t> rows(pos.size());
  for (size_t r = 0; r < pos.size(); ++r) rows[r] = int32_t(int64_t(r) * width + P + pos[r]);
  return rows;
}

int32_t ClassificationObjective::hard_target(int32_t value) const {
  const int32_t L = int32_t(labels_.size());
  if (value < L) return value;
  const std::vector<float>& q = soft_targets_.at(size_t(value - L));
  return int32_t(std::max_element(q.begin(), q.end()) - q.begin());
}

std::vector<int32_t> ClassificationObjective::targets(const Batch& b) const {
  const std::vector<int32_t> pos = read_positions(b);
  const int32_t* labels = b.labels.data<int32_t>();
  std::vector<int32_t> out(pos.size());
  for (size_t r = 0; r < pos.size(); ++r) out[r] = labels[int64_t(r) * b.seq + pos[r]];
  return out;
}

Var ClassificationObjective::loss(const Batch& b, float normaliser, const ForwardContext& fwd) {
  std::vector<int32_t> t = targets(b);
  const int32_t L = int32_t(labels_.size());
  std::vector<const std::vector<float>*> soft(t.size(), nullptr);
  bool any_soft = false, any_hard = false;
  for (size_t r = 0; r < t.size(); ++r) {
    if (t[r] >= L) soft[r] = &soft_targets_.at(size_t(t[r] - L)), t[r] = kIgnoreIndex;
    any_soft |= soft[r] != nullptr;
    any_hard |= t[r] != kIgnoreIndex;
  }
  const Var s = scores(b, fwd);
  CrossEntropyOptions o;
  o.normaliser = normaliser;
  Var hard;
  if (any_hard || !any_soft)
    hard = cross_entropy_from_logits(s, Tensor::from_vector_i32(t, {int64_t(t.size())}), o);
  if (!any_soft) return hard;
  Var distill = distillation_loss(s, soft, cfg_.distill_temperature, normaliser);
  return any_hard ? add(hard, distill) : distill;
}

EvalMetrics ClassificationObjective::evaluate(const BatchBuilder& data, ModelHooks* hooks) {
  NoGradGuard no_grad;
  std::vector<std::vector<double>> all_scores;
  std::vector<int32_t> all_targets;
  for_each_batch_in_order(data, kEvalBatch, [&](const Batch& b) {
    const Tensor s = scores(b, {.hooks = hooks})->value;
    const std::vector<int32_t> t = targets(b);
    const int64_t L = s.dim(1);
    for (int64_t r = 0; r < b.batch; ++r) {
      const float* row = s.data<float>() + r * L;
      all_scores.emplace_back(row, row + L);
      all_targets.push_back(t[size_t(r)] == kIgnoreIndex ? -1 : hard_target(t[size_t(r)]));
    }
  });
  return classification_metrics(labels_, std::move(all_scores), all_targets);
}

EvalMetrics classification_metrics(const std::vector<std::string>& labels,
                                   std::vector<std::vector<double>> scores,
                                   const std::vector<int32_t>& targets) {
  EvalMetrics m;
  m.labels = labels;
  const size_t L = labels.size();
  m.confusion.assign(L, std::vector<int64_t>(L, 0));
  double nll = 0;
  int64_t correct = 0;
  for (size_t r = 0; r < scores.size(); ++r) {
    const std::vector<double>& row = scores[r];
    const size_t pred = size_t(std::max_element(row.begin(), row.end()) - row.begin());
    double z = 0;
    for (double v : row) z += std::exp(v - row[pred]);
    std::vector<double> p(L);
    for (size_t k = 0; k < L; ++k) p[k] = std::exp(row[k] - row[pred]) / z;
    const int32_t target = targets[r];
    if (target >= 0) {
      nll -= std::log(std::max(p[size_t(target)], 1e-300));
      ++m.count;
      correct += pred == size_t(target);
      ++m.confusion[size_t(target)][pred];
    }
    m.probabilities.push_back(std::move(p));
  }
  if (m.count > 0) {
    m.loss = nll / double(m.count);
    m.accuracy = double(correct) / double(m.count);
  }
  m.scores = std::move(scores);
  m.targets = targets;
  return m;
}

double macro_f1(const std::vector<std::vector<int64_t>>& confusion) {
  const size_t L = confusion.size();
  if (L == 0) return 0;
  double total = 0;
  for (size_t k = 0; k < L; ++k) {
    int64_t tp = confusion[k][k], predicted = 0, actual = 0;
    for (size_t j = 0; j < L; ++j) predicted += confusion[j][k], actual += confusion[k][j];
    if (predicted + actual > 0) total += 2.0 * double(tp) / double(predicted + actual);
  }
  return total / double(L);
}

}  // namespace peft
