// Tokenizers: ids exactly as the Hugging Face tokenizer of a model folder gives them.
//
//   auto tok = peft::load_tokenizer("models/qwen2.5-0.5b");
//   std::vector<int32_t> ids = tok->encode("Hello world");   // add_special_tokens per HF
//   std::string text = tok->decode(ids);
//
// load_tokenizer picks, in this order: tokenizer.json (byte-level BPE or WordPiece), vocab.json +
// merges.txt (GPT-2 style BPE), tokenizer.model (SentencePiece), vocab.txt (BERT WordPiece).
// tokenizer_config.json (optional) gives the special tokens, add_bos_token / add_eos_token and the
// chat template. Invalid UTF-8 in the input is replaced by U+FFFD first (see tokenizer/unicode.h).
// All methods are const and safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace peft {

// Ids of the named special tokens; -1 where the tokenizer has none.
struct SpecialTokenIds {
  int32_t bos = -1, eos = -1, pad = -1, unk = -1, cls = -1, sep = -1, mask = -1;
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// A rendered conversation. assistant_spans are [begin, end) token ranges holding an assistant
// turn's content and its end-of-turn token: the tokens a chat fine-tune puts the loss on.
struct ChatEncoding {
  std::vector<int32_t> ids;
  std::vector<std::pair<size_t, size_t>> assistant_spans;
  // 1 for the tokens inside assistant_spans, 0 elsewhere (same length as ids).
  std::vector<uint8_t> assistant_mask() const;
};

enum class ChatFormat {
  kNone,      // no chat format known for this tokenizer
  kChatML,    // <|im_start|>role\ncontent<|im_end|>\n (Qwen, Qwen2, Qwen2.5)
  kBaichuan,  // <reserved_102> (id 195) user / <reserved_103> (196) assistant, as Baichuan chat
};

// What the chat renderer needs; filled by load_tokenizer from the tokens and the chat template.
struct ChatSettings {
  ChatFormat format = ChatFormat::kNone;
  bool has_template = false;                      // tokenizer_config.json has a chat_template
  std::optional<std::string> default_system;      // system prompt used when none is given
  int32_t turn_start = -1, turn_end = -1;         // ChatML: <|im_start|>, <|im_end|>
  int32_t user_token = -1, assistant_token = -1;  // Baichuan: 195, 196
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of text. add_special_tokens as HF's: BERT adds [CLS] ... [SEP], Llama / Baichuan
  // SentencePiece add BOS (per add_bos_token / add_eos_token), Qwen adds nothing.
  virtual std::vector<int32_t> encode(std::string_view text,
                                      bool add_special_tokens = true) const = 0;
  // Text of ids; ids that are not in the vocabulary are skipped (as HF does).
  virtual std::string decode(std::span<const int32_t> ids,
                             bool skip_special_tokens = false) const = 0;
  // Id of a token string as it is spelled in the vocabulary (e.g. "Ġworld", "##ing", "▁the"), or
  // -1.
  virtual int32_t token_to_id(std::string_view token) const = 0;
  // The vocabulary spelling of id, or "" when id is out of range.
  virtual std::string id_to_token(int32_t id) const = 0;
  // One past the largest id (model vocabulary plus added tokens).
  virtual int32_t vocab_size() const = 0;
  // True for special tokens (the ones decode(..., skip_special_tokens=true) drops).
  virtual bool is_special(int32_t id) const = 0;
  // "bpe", "wordpiece" or "sentencepiece".
  virtual std::string_view kind() const = 0;

  const SpecialTokenIds& special_ids() const { return special_; }
  int32_t bos_id() const { return special_.bos; }
  int32_t eos_id() const { return special_.eos; }
  int32_t pad_id() const { return special_.pad; }
  int32_t unk_id() const { return special_.unk; }

  const ChatSettings& chat() const { return chat_; }
  // Renders messages in this tokenizer's chat format (see docs/tokenizers.md); throws peft::Error
  // when the tokenizer has none, or for an unknown role.
  ChatEncoding render_chat(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

 protected:
  SpecialTokenIds special_;
  ChatSettings chat_;
  friend std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);
};

// Loads the tokenizer of a model folder (see the order above); throws peft::Error naming the
// folder when it has no tokenizer files or they are malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);

}  // namespace peft
