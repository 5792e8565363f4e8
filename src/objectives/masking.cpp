#include "objectives/masking.h"

#include "core/error.h"
#include "core/rng.h"

namespace peft {

std::vector<uint8_t> word_starts(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  std::vector<uint8_t> starts(ids.size(), 1);
  const std::string_view kind = tokenizer.kind();
  for (size_t i = 1; i < ids.size(); ++i) {
    if (tokenizer.is_special(ids[i]) || tokenizer.is_special(ids[i - 1])) continue;
    const std::string piece = tokenizer.id_to_token(ids[i]);
    if (kind == "wordpiece")
      starts[i] = !piece.starts_with("##");
    else if (kind == "bpe")
      starts[i] = piece.starts_with("\xC4\xA0");  // "Ġ": the byte-level space
    else
      starts[i] = piece.starts_with("\xE2\x96\x81");  // "▁"
  }
  return starts;
}

void mask_tokens(Example& e, const Tokenizer& tokenizer, int64_t vocab_size,
                 const MaskingOptions& options, uint64_t record) {
  const int32_t mask_id = tokenizer.special_ids().mask;
  if (mask_id < 0) fail("masked-LM training needs a mask token, and the tokenizer has none");
  const size_t n = e.input_ids.size();
  const std::vector<uint8_t> starts =
      options.whole_word ? word_starts(tokenizer, e.input_ids) : std::vector<uint8_t>(n, 1);
  // Three draws per token: selection (per word start), corruption kind, random id.
  const Rng rng(options.seed, record);
  e.labels.assign(n, kIgnoreIndex);
  bool word_selected = false;
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = e.input_ids[i];
    if (tokenizer.is_special(id)) {
      word_selected = false;
      continue;
    }
    if (starts[i]) word_selected = rng.uniform_at(3 * i) < options.probability;
    if (!word_selected) continue;
    e.labels[i] = id;
    const float kind = rng.uniform_at(3 * i + 1);
    if (kind < options.mask_share)
      e.input_ids[i] = mask_id;
    else if (kind < options.mask_share + options.random_share)
      e.input_ids[i] = int32_t(rng.bits_at(3 * i + 2) % uint32_t(vocab_size));
  }
}

}  // namespace peft
