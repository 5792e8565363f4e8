// load_tokenizer: which tokenizer a model folder holds, and its special tokens.
#include <filesystem>

#include "tokenizer/bpe.h"
#include "tokenizer/chat.h"
#include "tokenizer/config.h"
#include "tokenizer/sentencepiece.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/wordpiece.h"

namespace peft {

namespace {

std::unique_ptr<Tokenizer> from_tokenizer_json(const std::string& path,
                                               const tok::TokenizerConfig& cfg) {
  const tok::TokenizerJson tj = tok::read_tokenizer_json(path);
  const nlohmann::json& j = tj.doc;
  if (!j.contains("model") || !j["model"].is_object())
    fail("{}: expected an object with a \"model\"", path);
  // Old files have no model.type: BPE has merges, WordPiece does not.
  std::string type = j["model"].value("type", "");
  if (type.empty()) type = tj.has_merges ? "BPE" : "WordPiece";
  try {
    if (type == "BPE") return tok::bpe_from_tokenizer_json(tj, path, cfg);
    if (type == "WordPiece") return tok::wordpiece_from_tokenizer_json(tj, path, cfg);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected structure: {}", path, e.what());
  }
  throw tok::Unsupported(fmt::format("{}: model type {:?} is not supported", path, type));
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) fail("{}: no such folder", dir);
  const tok::TokenizerConfig cfg = tok::read_tokenizer_config(dir);
  auto has = [&](const char* name) { return tok::file_exists(dir + "/" + name); };

  std::unique_ptr<Tokenizer> t;
  std::string unsupported;  // why tokenizer.json was passed over
  if (has("tokenizer.json")) {
    try {
      t = from_tokenizer_json(dir + "/tokenizer.json", cfg);
    } catch (const tok::Unsupported& e) {
      unsupported = e.what();
    }
  }
  try {
    if (!t && has("vocab.json") && has("merges.txt")) t = tok::bpe_from_vocab_merges(dir, cfg);
    if (!t && has("tokenizer.model")) t = tok::sentencepiece_from_model(dir, cfg);
    if (!t && has("vocab.txt")) t = tok::wordpiece_from_vocab_txt(dir, cfg);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected tokenizer file structure: {}", dir, e.what());
  }
  if (!t && !unsupported.empty()) fail("{}", unsupported);
  if (!t)
    fail(
        "{}: no tokenizer files (expected tokenizer.json, vocab.json + merges.txt, "
        "tokenizer.model or vocab.txt)",
        dir);

  // Special tokens: tokenizer_config.json by content; otherwise the family's usual names.
  SpecialTokenIds& s = t->special_;
  auto pick = [&](int32_t& slot, const std::optional<std::string>& named, const char* dflt) {
    if (named)
      slot = t->token_to_id(*named);
    else if (slot < 0 && dflt)
      slot = t->token_to_id(dflt);
  };
  const bool wp = t->kind() == "wordpiece", bpe = t->kind() == "bpe";
  pick(s.bos, cfg.bos_token, nullptr);
  pick(s.eos, cfg.eos_token, bpe ? "<|endoftext|>" : nullptr);
  pick(s.pad, cfg.pad_token, wp ? "[PAD]" : bpe ? "<|endoftext|>" : nullptr);
  pick(s.unk, cfg.unk_token, wp ? "[UNK]" : nullptr);
  pick(s.cls, cfg.cls_token, wp ? "[CLS]" : nullptr);
  pick(s.sep, cfg.sep_token, wp ? "[SEP]" : nullptr);
  pick(s.mask, cfg.mask_token, wp ? "[MASK]" : nullptr);
  tok::detect_chat_format(*t, cfg, t->chat_);
  return t;
}

}  // namespace peft
