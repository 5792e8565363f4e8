// Masked-LM input corruption (BERT, Devlin et al. 2019): each maskable token is selected with
// probability p (default 0.15); a selected token is replaced by [MASK] with probability 0.8, by a
// uniformly random vocabulary id with 0.1, and kept with 0.1; labels hold the original id at the
// selected positions and −100 elsewhere. Special tokens ([CLS], [SEP], padding) are never
// selected. Whole-word masking selects words (a token and its continuation pieces) instead of
// tokens, each with probability p, and corrupts every piece of a selected word.
// Draws come from a counter-based Rng keyed by (seed, stream = record index): the masks of a
// record do not depend on the order or batching of the data.
#pragma once

#include <cstdint>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "train/batch.h"

namespace peft {

struct MaskingOptions {
  double probability = 0.15;
  double mask_share = 0.8;    // of the selected: replaced by [MASK]
  double random_share = 0.1;  // of the selected: replaced by a random id (the rest stay)
  bool whole_word = false;
  uint64_t seed = 0;
};

// Which tokens begin a word (1) or continue one (0): WordPiece's "##" pieces, byte-level BPE's
// pieces without a leading "Ġ", SentencePiece's without "▁" continue the word before them.
std::vector<uint8_t> word_starts(const Tokenizer& tokenizer, const std::vector<int32_t>& ids);

// Corrupts e.input_ids in place and sets e.labels (see the top of the file). `record` selects the
// random stream. The tokenizer must have a mask token.
void mask_tokens(Example& e, const Tokenizer& tokenizer, int64_t vocab_size,
                 const MaskingOptions& options, uint64_t record);

}  // namespace peft
