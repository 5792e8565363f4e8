#include "objectives/pet.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "core/error.h"
#include "io/files.h"
#include "objectives/batches.h"
#include "objectives/masking.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "train/data.h"

namespace peft {

std::vector<PatternPiece> parse_pattern(const std::string& pattern) {
  std::vector<PatternPiece> out;
  int masks = 0;
  size_t pos = 0;
  while (pos < pattern.size()) {
    const size_t open = pattern.find('{', pos);
    const size_t close = open == std::string::npos ? open : pattern.find('}', open);
    if (open == std::string::npos || close == std::string::npos) {
      out.push_back({PatternPiece::Kind::Literal, pattern.substr(pos)});
      break;
    }
    if (open > pos) out.push_back({PatternPiece::Kind::Literal, pattern.substr(pos, open - pos)});
    const std::string name = pattern.substr(open + 1, close - open - 1);
    if (name == "text")
      out.push_back({PatternPiece::Kind::Text, {}});
    else if (name == "text_b")
      out.push_back({PatternPiece::Kind::TextB, {}});
    else if (name == "mask")
      out.push_back({PatternPiece::Kind::Mask, {}}), ++masks;
    else
      fail("--pattern \"{}\": unknown placeholder {{{}}} (expected {{text}}, {{text_b}}, {{mask}})",
           pattern, name);
    pos = close + 1;
  }
  if (masks != 1)
    fail("--pattern \"{}\": a pattern has exactly one {{mask}}, found {}", pattern, masks);
  return out;
}

std::vector<std::pair<std::string, std::vector<std::string>>> parse_verbalizer(
    const std::string& text_or_path) {
  const bool inline_json = text_or_path.find('{') != std::string::npos;
  const std::string where = inline_json ? "--verbalizer" : text_or_path;
  const std::string text = inline_json ? text_or_path : read_text_file(text_or_path);
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", where, e.what());
  }
  if (!j.is_object() || j.size() < 2)
    fail(
        "{}: expected a JSON object mapping at least two labels to words, e.g. "
        "{{\"positive\": \"great\", \"negative\": \"terrible\"}}",
        where);
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (const auto& [label, words] : j.items()) {
    std::vector<std::string> list;
    if (words.is_string()) list.push_back(words.get<std::string>());
    if (words.is_array())
      for (const auto& w : words)
        if (w.is_string()) list.push_back(w.get<std::string>());
    if (list.empty() || (words.is_array() && list.size() != words.size()))
      fail("{}: label \"{}\" must map to a word or a list of words", where, label);
    out.emplace_back(label, std::move(list));
  }
  return out;
}

PetObjective::PetObjective(const ObjectiveContext& ctx, const ObjectiveConfig& cfg,
                           const std::string& pattern)
    : ClassificationObjective(ctx, cfg),
      pattern_(parse_pattern(pattern)),
      masked_lm_(!ctx.model->is_causal_lm()) {
  const Tokenizer* tok = ctx_.tokenizer;
  if (!tok) fail("--task pet needs the model folder's tokenizer");
  if (masked_lm_ && tok->special_ids().mask < 0)
    fail("--task pet on a masked LM needs a mask token, and the tokenizer has none");
  if (cfg_.verbalizer.empty()) fail("--task pet needs --verbalizer");
  if (!masked_lm_) {
    // The example ends before the mask; whitespace just before it goes into the word.
    for (size_t i = 0; i < pattern_.size(); ++i) {
      if (pattern_[i].kind != PatternPiece::Kind::Mask) continue;
      if (i > 0 && pattern_[i - 1].kind == PatternPiece::Kind::Literal) {
        std::string& lit = pattern_[i - 1].literal;
        const size_t keep = lit.find_last_not_of(" \t\n");
        const size_t cut = keep == std::string::npos ? 0 : keep + 1;
        mask_prefix_ = lit.substr(cut);
        lit.resize(cut);
      }
      pattern_.resize(i + 1);  // nothing after the mask is read
    }
  }
  const int64_t vocab = ctx_.model->config().vocab_size;
  for (const auto& [label, words] : parse_verbalizer(cfg_.verbalizer)) {
    labels_.push_back(label);
    std::vector<int32_t> ids;
    for (const std::string& w : words) {
      const std::vector<int32_t> t = tok->encode(mask_prefix_ + w, false);
      if (t.size() != 1) {
        std::string pieces;
        for (int32_t id : t) {  // appended piece by piece (GCC 12 -Wrestrict on "" + string)
          if (!pieces.empty()) pieces += ' ';
          pieces += tok->id_to_token(id);
        }
        fail(
            "--verbalizer: \"{}\" (label \"{}\") is {} tokens [{}], and PET needs one token per "
            "word: choose a word that is a single token",
            mask_prefix_ + w, label, t.size(), pieces);
      }
      if (t[0] >= vocab)
        fail("--verbalizer: \"{}\" is token {}, outside the model's vocabulary of {}", w, t[0],
             vocab);
      ids.push_back(t[0]);
      flat_tokens_.push_back(t[0]);
    }
    label_tokens_.push_back(std::move(ids));
  }
  const int64_t L = int64_t(labels_.size()), K = int64_t(flat_tokens_.size());
  std::vector<float> avg(size_t(L * K), 0.0f);
  int64_t k = 0;
  for (int64_t l = 0; l < L; ++l)
    for (size_t j = 0; j < label_tokens_[size_t(l)].size(); ++j, ++k)
      avg[size_t(l * K + k)] = 1.0f / float(label_tokens_[size_t(l)].size());
  averaging_ = constant(Tensor::from_vector(avg, {L, K}), "pet.verbalizer_average");

  const double alpha = cfg_.pet_mlm_weight;
  if (alpha < 0 || alpha > 1) fail("--pet-mlm-weight {}: expected a weight in [0, 1]", alpha);
  if ((alpha > 0) != !cfg_.unlabeled_data.empty())
    fail(
        "--pet-mlm-weight and --unlabeled-data go together (PET's auxiliary MLM loss on "
        "unlabeled text)");
  if (alpha > 0) {
    if (!masked_lm_)
      fail("--pet-mlm-weight: the auxiliary MLM loss needs a masked LM (BERT); {} is a decoder",
           ctx_.model->config().model_type);
    const std::string& path = cfg_.unlabeled_data;
    const std::vector<JsonRecord> records = read_json_records(path);
    if (records.empty()) fail("{}: no records", path);
    std::vector<Example> examples;
    if (records.front().value.is_object() && records.front().value.contains("input_ids")) {
      examples = read_training_records(path, tok, vocab);
    } else {
      for (const ClassRecord& r : read_class_records(path)) {
        ClassRecord text_only = r;
        text_only.label.clear(), text_only.soft_labels.clear();
        examples.push_back(build(text_only, kIgnoreIndex));
      }
    }
    MaskingOptions m;
    m.probability = cfg_.mask_probability;
    m.whole_word = cfg_.whole_word_mask;
    m.seed = cfg_.seed * 2 + 1000003;  // a stream of its own
    for (size_t i = 0; i < examples.size(); ++i)
      if (examples[i].labels == examples[i].input_ids || records.front().value.contains("text"))
        mask_tokens(examples[i], *tok, vocab, m, i);
    BatchingOptions batching;
    batching.shuffle = false;
    batching.shifted = false;
    batching.max_len = cfg_.max_len;
    batching.pad_id = tok->pad_id() >= 0 ? tok->pad_id() : 0;
    unlabeled_ = std::make_unique<BatchBuilder>(std::move(examples), batching);
  }
}

Var PetObjective::loss(const Batch& b, float normaliser, const ForwardContext& fwd) {
  Var ce = ClassificationObjective::loss(b, normaliser, fwd);
  if (!unlabeled_ || !fwd.training) return ce;  // evaluation: the classification loss alone
  const double alpha = cfg_.pet_mlm_weight;
  std::vector<size_t> rows(size_t(b.batch));
  for (size_t& r : rows) r = next_unlabeled_++ % unlabeled_->num_examples();
  const Batch u = unlabeled_->make_batch(rows);
  if (u.target_tokens == 0) return scale(ce, float(1 - alpha));
  Var hidden = ctx_.model->forward(model_inputs(u), fwd);
  CrossEntropyOptions o;
  o.normaliser = double(u.target_tokens);
  Var mlm = ctx_.model->loss(hidden, u.labels, o);
  return add(scale(ce, float(1 - alpha)),
             scale(mlm, float(alpha * double(b.batch) / double(normaliser))));
}

Example PetObjective::build(const ClassRecord& r, int32_t class_index) {
  const Tokenizer& tok = *ctx_.tokenizer;
  std::vector<int32_t> text = tok.encode(r.text, false), text_b = tok.encode(r.text_b, false);
  const int32_t mask_id = tok.special_ids().mask;
  if (masked_lm_ && (std::count(text.begin(), text.end(), mask_id) > 0 ||
                     std::count(text_b.begin(), text_b.end(), mask_id) > 0))
    fail("line {}: the text holds the mask token itself; PET reads the pattern's mask only",
         r.line);
  // Specials around the pattern: BERT's [CLS] … [SEP]; a decoder's BOS where it adds one.
  std::vector<int32_t> front = tok.encode("", true), back;
  if (masked_lm_) {
    front = {tok.special_ids().cls};
    back = {tok.special_ids().sep};
  }
  int64_t fixed = int64_t(front.size() + back.size());
  std::vector<std::vector<int32_t>> literal_ids(pattern_.size());
  for (size_t i = 0; i < pattern_.size(); ++i) {
    if (pattern_[i].kind == PatternPiece::Kind::Literal)
      literal_ids[i] = tok.encode(pattern_[i].literal, false);
    fixed += int64_t(literal_ids[i].size()) + (pattern_[i].kind == PatternPiece::Kind::Mask);
  }
  if (!masked_lm_) fixed -= 1;  // the mask slot is not a token of a decoder's example
  if (fixed >= cfg_.max_len)
    fail("--max-len {}: the pattern alone takes {} tokens", cfg_.max_len, fixed);
  fit_pieces(text, text_b, cfg_.max_len - fixed);
  Example e;
  e.input_ids = front;
  int64_t read_at = -1;
  for (size_t i = 0; i < pattern_.size(); ++i) {
    const PatternPiece& p = pattern_[i];
    const std::vector<int32_t>* piece = &literal_ids[i];
    if (p.kind == PatternPiece::Kind::Text) piece = &text;
    if (p.kind == PatternPiece::Kind::TextB) piece = &text_b;
    if (p.kind == PatternPiece::Kind::Mask) {
      if (masked_lm_) {
        read_at = int64_t(e.input_ids.size());
        e.input_ids.push_back(mask_id);
      } else {
        read_at = int64_t(e.input_ids.size()) - 1;
      }
      continue;
    }
    e.input_ids.insert(e.input_ids.end(), piece->begin(), piece->end());
  }
  e.input_ids.insert(e.input_ids.end(), back.begin(), back.end());
  if (read_at < 0) fail("line {}: the pattern puts no token before the mask", r.line);
  e.labels.assign(e.input_ids.size(), kIgnoreIndex);
  // Unlabelled records still need their read position marked for batching: a class index is
  // stored only when known; read_positions finds the position from the tokens themselves.
  e.labels[size_t(read_at)] = class_index;
  return e;
}

std::vector<int32_t> PetObjective::read_positions(const Batch& b) const {
  if (!masked_lm_) return last_tokens(b);
  const int32_t mask_id = ctx_.tokenizer->special_ids().mask;
  const int32_t* ids = b.input_ids.data<int32_t>();
  std::vector<int32_t> out(size_t(b.batch), 0);
  for (int64_t r = 0; r < b.batch; ++r)
    for (int64_t t = 0; t < b.seq; ++t)
      if (ids[r * b.seq + t] == mask_id) {
        out[size_t(r)] = int32_t(t);
        break;
      }
  return out;
}

Var PetObjective::scores(const Batch& b, const ForwardContext& fwd) {
  Var hidden = ctx_.model->forward(model_inputs(b), fwd);
  Var logits = ctx_.model->token_logits(hidden, read_rows(b, hidden), flat_tokens_);  // [B, K]
  return linear(logits, averaging_);                                                  // [B, L]
}

std::unique_ptr<Objective> make_pet_objective(const ObjectiveContext& ctx,
                                              const ObjectiveConfig& cfg) {
  if (cfg.patterns.empty()) fail("--task pet needs --pattern, e.g. \"{{text}} It was {{mask}}.\"");
  return std::make_unique<PetObjective>(ctx, cfg, cfg.patterns.front());
}

}  // namespace peft
