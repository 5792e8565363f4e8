#include "tokenizer/sentencepiece.h"

#include <sentencepiece_processor.h>

#include "tokenizer/unicode.h"

namespace peft::tok {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path, const TokenizerConfig& cfg) {
    const auto status = sp_.Load(path);
    if (!status.ok()) fail("{}: not a SentencePiece model: {}", path, status.ToString());
    if (sp_.GetPieceSize() <= 0) fail("{}: the model has no pieces", path);
    special_.bos = sp_.bos_id();
    special_.eos = sp_.eos_id();
    special_.unk = sp_.unk_id();
    special_.pad = sp_.pad_id();
    add_bos_ = cfg.add_bos_token.value_or(true);
    add_eos_ = cfg.add_eos_token.value_or(false);
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    std::string clean;
    if (!utf8_valid(text)) {
      clean = utf8_sanitize(text);
      text = clean;
    }
    std::vector<int> ids;
    const auto status = sp_.Encode(absl::string_view(text.data(), text.size()), &ids);
    if (!status.ok()) fail("SentencePiece encode failed: {}", status.ToString());
    std::vector<int32_t> out;
    out.reserve(ids.size() + 2);
    if (add_special_tokens && add_bos_ && special_.bos >= 0) out.push_back(special_.bos);
    out.insert(out.end(), ids.begin(), ids.end());
    if (add_special_tokens && add_eos_ && special_.eos >= 0) out.push_back(special_.eos);
    return out;
  }

  // Runs of ordinary pieces go through SentencePiece's decoder; special pieces (control and
  // unknown) are written as their text, or dropped with skip_special_tokens, as transformers'
  // slow LlamaTokenizer does.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::string out;
    std::vector<int> run;
    auto flush = [&] {
      if (run.empty()) return;
      std::string s;
      const auto status = sp_.Decode(run, &s);
      if (!status.ok()) fail("SentencePiece decode failed: {}", status.ToString());
      out += s;
      run.clear();
    };
    for (int32_t id : ids) {
      if (id < 0 || id >= sp_.GetPieceSize()) continue;
      if (is_special(id)) {
        flush();
        if (!skip_special_tokens) out += sp_.IdToPiece(id);
      } else {
        run.push_back(id);
      }
    }
    flush();
    return utf8_sanitize(out);
  }

  int32_t token_to_id(std::string_view token) const override {
    const int id = sp_.PieceToId(absl::string_view(token.data(), token.size()));
    if (id == sp_.unk_id() && token != sp_.IdToPiece(id)) return -1;  // PieceToId's "not found"
    return id;
  }
  std::string id_to_token(int32_t id) const override {
    return id >= 0 && id < sp_.GetPieceSize() ? sp_.IdToPiece(id) : std::string();
  }
  int32_t vocab_size() const override { return sp_.GetPieceSize(); }
  bool is_special(int32_t id) const override {
    return id >= 0 && id < sp_.GetPieceSize() && (sp_.IsControl(id) || sp_.IsUnknown(id));
  }
  std::string_view kind() const override { return "sentencepiece"; }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  bool add_bos_ = true, add_eos_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> sentencepiece_from_model(const std::string& dir,
                                                    const TokenizerConfig& cfg) {
  return std::make_unique<SentencePieceTokenizer>(dir + "/tokenizer.model", cfg);
}

}  // namespace peft::tok
