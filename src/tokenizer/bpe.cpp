// Byte-level BPE. The pipeline follows HF tokenizers step by step:
//   added tokens (raw text) -> normaliser -> added tokens (normalised) -> pre-tokenizer splits
//   -> ByteLevel (bytes as GPT-2's printable alphabet) -> BPE merges by rank -> post-processor.
// The merge loop is HF's (a heap of (rank, position), stale entries skipped), so ties and
// duplicate merge results resolve the same way; words up to kCacheWordBytes are cached.
#include "tokenizer/bpe.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <mutex>
#include <span>
#include <unordered_map>

#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace peft::tok {

const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

const char32_t* byte_level_alphabet() {
  static const auto table = [] {
    std::array<char32_t, 256> t{};
    char32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      t[b] = printable ? static_cast<char32_t>(b) : extra++;
    }
    return t;
  }();
  return table.data();
}

namespace {

// Words up to this size go through the word cache; longer ones (typically runs of CJK text,
// rarely repeated) would only evict the short, frequent words.
constexpr size_t kCacheWordBytes = 64;

// (left id, right id) -> (rank, merged id), open addressing with linear probing.
class MergeMap {
 public:
  struct Value {
    int32_t rank, id;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    if (cap <= slots_.size()) return;
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{kEmpty, {}});
    mask_ = cap - 1;
    shift_ = 64 - std::countr_zero(cap);
    size_ = 0;
    for (const Slot& s : old)
      if (s.key != kEmpty) insert_key(s.key, s.value);
  }
  void insert(int32_t a, int32_t b, Value v) { insert_key(key(a, b), v); }
  // Starts loading the slot of (a, b): the table is megabytes, so a lookup is mostly a cache miss,
  // and a word's pair lookups overlap when they are all prefetched first.
  void prefetch(int32_t a, int32_t b) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[slot(key(a, b))]);
  }
  const Value* find(int32_t a, int32_t b) const {
    if (slots_.empty()) return nullptr;
    const uint64_t k = key(a, b);
    for (size_t i = slot(k);; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return &slots_[i].value;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  struct Slot {  // key and value side by side: one cache line per probe
    uint64_t key;
    Value value;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  // Fibonacci hashing: the top bits of the product depend on all bits of the key.
  size_t slot(uint64_t k) const {
    return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  void insert_key(uint64_t k, Value v) {
    if (2 * (size_ + 1) > slots_.size()) reserve(std::max<size_t>(16, slots_.size()));
    size_t i = slot(k);
    while (slots_[i].key != kEmpty && slots_[i].key != k) i = (i + 1) & mask_;
    size_ += slots_[i].key == kEmpty;
    slots_[i] = {k, v};
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

enum class NormOp { kNFC, kNFD, kNFKC, kNFKD, kLowercase };
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct SplitStep {
  std::unique_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

struct Symbol {
  int32_t id, prev, next;
  uint32_t len;
};
struct QueueItem {
  int32_t rank, pos, new_id;
  int32_t left, right;  // the pair it was made from
};

// Per-thread scratch buffers for the merge loop.
struct Scratch {
  std::vector<Symbol> symbols;
  std::vector<QueueItem> heap;
  std::vector<Span> spans;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// word -> ids of recently seen words: direct-mapped (one slot per hash value), so it never grows
// past kSlots entries and needs no clearing; shared by all threads behind a mutex.
class WordCache {
 public:
  bool get(size_t hash, std::string_view word, std::vector<int32_t>& out) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (slots_.empty()) return false;
    const Slot& s = slots_[hash & (kSlots - 1)];
    if (s.hash != hash || s.word != word) return false;
    out.insert(out.end(), s.ids.begin(), s.ids.end());
    return true;
  }
  void put(size_t hash, std::string_view word, std::span<const int32_t> ids) {
    std::lock_guard<std::mutex> lock(mu_);
    if (slots_.empty()) slots_.resize(kSlots);
    Slot& s = slots_[hash & (kSlots - 1)];
    s.hash = hash;
    s.word.assign(word);
    s.ids.assign(ids.begin(), ids.end());
  }

 private:
  static constexpr size_t kSlots = 1 << 16;
  struct Slot {
    size_t hash = 0;
    std::string word;
    std::vector<int32_t> ids;
  };
  mutable std::mutex mu_;
  std::vector<Slot> slots_;
};

class BpeTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  int32_t token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override {
    return id >= 0 && static_cast<size_t>(id) < tokens_.size() ? tokens_[id] : std::string();
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  bool is_special(int32_t id) const override {
    return id >= 0 && static_cast<size_t>(id) < special_flag_.size() && special_flag_[id];
  }
  std::string_view kind() const override { return "bpe"; }

  // ---- set up by the loaders ----
  void set_vocab(const std::vector<std::pair<std::string, int32_t>>& vocab,
                 const std::string& path);
  int add_merge(const std::string& a, const std::string& b, int32_t rank);
  void set_added_tokens(std::vector<AddedToken> added);
  void finish();

  std::vector<NormOp> normalizer;
  std::vector<SplitStep> splits;
  bool byte_level = true;
  bool add_prefix_space = false;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  std::string unk_token, continuing_subword_prefix, end_of_word_suffix;
  SpecialAffixes affixes;
  MergeMap merges;

 private:
  bool normalize(std::string_view s, std::string& out) const;
  void encode_segment(std::string_view seg, std::vector<int32_t>& out) const;
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void merge(std::vector<Symbol>& sy, std::vector<int32_t>& out) const;

  FlatVocab vocab_;                  // model vocabulary spelling -> id
  StringMap added_by_content_;       // added token content -> id
  std::vector<std::string> tokens_;  // id -> spelling ("" for holes)
  std::vector<std::string> bytes_;   // id -> the raw bytes it decodes to
  std::vector<uint8_t> special_flag_;
  int32_t byte_ids_[256];      // id of the one-byte token for each byte (byte-level), or -1
  int32_t fallback_ids_[256];  // <0xXX> tokens, or -1
  int32_t unk_id_ = -1;
  AddedTokenMatcher raw_matcher_, normalized_matcher_;

  mutable WordCache cache_;
};

void BpeTokenizer::set_vocab(const std::vector<std::pair<std::string, int32_t>>& vocab,
                             const std::string& path) {
  int32_t max_id = -1;
  for (const auto& [tok, id] : vocab) {
    if (id < 0) fail("{}: token {:?} has a negative id {}", path, tok, id);
    max_id = std::max(max_id, id);
  }
  if (max_id > 50'000'000) fail("{}: token id {} is implausibly large", path, max_id);
  tokens_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [tok, id] : vocab) {
    if (!utf8_valid(tok)) fail("{}: token {} is not valid UTF-8", path, id);
    vocab_.insert(tok, id);
    tokens_[id] = tok;
  }
}

// 0: added; 1: a or b is not in the vocabulary; 2: a + b is not.
int BpeTokenizer::add_merge(const std::string& a, const std::string& b, int32_t rank) {
  const int32_t ia = vocab_.find(a), ib = vocab_.find(b);
  if (ia < 0 || ib < 0) return 1;
  const int32_t ic = vocab_.find(a + b);
  if (ic < 0) return 2;
  merges.insert(ia, ib, {rank, ic});
  return 0;
}

void check_merge(int rc, const std::string& where, const std::string& a, const std::string& b) {
  if (rc == 1) fail("{}: merge {:?} {:?} uses a token that is not in the vocabulary", where, a, b);
  if (rc == 2)
    fail("{}: merge {:?} {:?} makes {:?}, which is not in the vocabulary", where, a, b, a + b);
}

void BpeTokenizer::set_added_tokens(std::vector<AddedToken> added) {
  std::vector<AddedToken> raw, norm;
  for (AddedToken& t : added) {
    if (t.id < 0) fail("added token {:?} has no id", t.content);
    if (static_cast<size_t>(t.id) >= tokens_.size()) tokens_.resize(static_cast<size_t>(t.id) + 1);
    tokens_[t.id] = t.content;
    added_by_content_[t.content] = t.id;
    if (special_flag_.size() <= static_cast<size_t>(t.id)) special_flag_.resize(t.id + 1, 0);
    special_flag_[t.id] = t.special;
    if (t.normalized) {
      AddedToken n = t;
      if (!normalize(t.content, n.content)) n.content = t.content;
      if (!n.content.empty()) norm.push_back(std::move(n));
    } else {
      raw.push_back(t);
    }
  }
  raw_matcher_ = AddedTokenMatcher(std::move(raw));
  normalized_matcher_ = AddedTokenMatcher(std::move(norm));
}

void BpeTokenizer::finish() {
  special_flag_.resize(tokens_.size(), 0);
  // What each id decodes to: ByteLevel maps every character back to its byte; a token with a
  // character outside the alphabet (an added token such as "hello world") decodes to itself.
  const char32_t* alpha = byte_level_alphabet();
  std::array<int, 324> back;  // the alphabet is U+0021..U+0143
  back.fill(-1);
  for (int b = 0; b < 256; ++b) back[alpha[b]] = b;
  bytes_.assign(tokens_.size(), std::string());
  for (size_t id = 0; id < tokens_.size(); ++id) {
    const std::string& t = tokens_[id];
    if (!byte_level) {
      bytes_[id] = t;
      continue;
    }
    std::string raw;
    bool ok = true;
    for (size_t i = 0; i < t.size() && ok;) {
      const char32_t c = utf8_next(t, i);
      if (c >= back.size() || back[c] < 0)
        ok = false;
      else
        raw.push_back(static_cast<char>(back[c]));
    }
    bytes_[id] = ok ? raw : t;
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8_append(s, alpha[b]);
    byte_ids_[b] = byte_level ? vocab_.find(s) : -1;
    fallback_ids_[b] = vocab_.find(fmt::format("<0x{:02X}>", b));
  }
  if (!unk_token.empty()) {
    unk_id_ = vocab_.find(unk_token);
  }
}

int32_t BpeTokenizer::token_to_id(std::string_view token) const {
  if (auto it = added_by_content_.find(token); it != added_by_content_.end()) return it->second;
  return vocab_.find(token);
}

// Applies the normaliser; false (and out untouched) when the text is unchanged.
bool BpeTokenizer::normalize(std::string_view s, std::string& out) const {
  bool changed = false;
  std::string cur;
  for (NormOp op : normalizer) {
    const std::string_view v = changed ? std::string_view(cur) : s;
    std::string next;
    switch (op) {
      case NormOp::kNFC:
        if (nfc_quick_yes(v)) continue;
        next = unicode_normalize(v, NormalForm::kNFC);
        break;
      case NormOp::kNFD:
        next = unicode_normalize(v, NormalForm::kNFD);
        break;
      case NormOp::kNFKC:
        next = unicode_normalize(v, NormalForm::kNFKC);
        break;
      case NormOp::kNFKD:
        next = unicode_normalize(v, NormalForm::kNFKD);
        break;
      case NormOp::kLowercase:
        next.reserve(v.size());
        for (size_t i = 0; i < v.size();) append_lowercase(next, utf8_next(v, i));
        break;
    }
    cur = std::move(next);
    changed = true;
  }
  if (changed) out = std::move(cur);
  return changed;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return encode_around_added_tokens(
      text, raw_matcher_, affixes, add_special_tokens,
      [this](std::string_view seg, std::vector<int32_t>& out) { encode_segment(seg, out); });
}

// One stretch of text between raw-matched added tokens: normalise, then match the normalised
// added tokens, then pre-tokenise and run BPE on the rest.
void BpeTokenizer::encode_segment(std::string_view seg, std::vector<int32_t>& out) const {
  std::string normalized;
  if (normalize(seg, normalized)) seg = normalized;
  if (normalized_matcher_.empty()) {
    encode_text(seg, out);
    return;
  }
  std::vector<Piece> pieces;
  normalized_matcher_.split(seg, pieces);
  for (const Piece& p : pieces) {
    if (p.id >= 0)
      out.push_back(p.id);
    else
      encode_text(seg.substr(p.begin, p.end - p.begin), out);
  }
}

// Splits one pre-token by a Split step (HF's SplitDelimiterBehavior) into `out`.
void split_word(const SplitStep& step, std::string_view w, std::vector<std::string_view>& out) {
  std::vector<Span> spans;
  step.regex->find_all(w, spans);
  struct Seg {  // alternating gaps and matches covering w
    size_t b, e;
    bool m;
  };
  std::vector<Seg> segs, merged;
  size_t at = 0;
  for (const Span& s : spans) {
    if (s.begin > at) segs.push_back({at, s.begin, step.invert});
    segs.push_back({s.begin, s.end, !step.invert});
    at = s.end;
  }
  if (at < w.size()) segs.push_back({at, w.size(), step.invert});
  bool prev_match = false;
  switch (step.behavior) {
    case SplitBehavior::kIsolated:
      merged = std::move(segs);
      break;
    case SplitBehavior::kRemoved:
      for (const Seg& s : segs)
        if (!s.m) merged.push_back(s);
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Seg& s : segs) {
        if (s.m && !prev_match && !merged.empty())
          merged.back().e = s.e;
        else
          merged.push_back(s);
        prev_match = s.m;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t k = segs.size(); k-- > 0;) {
        const Seg& s = segs[k];
        if (s.m && !prev_match && !merged.empty())
          merged.back().b = s.b;
        else
          merged.push_back(s);
        prev_match = s.m;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case SplitBehavior::kContiguous:
      for (size_t k = 0; k < segs.size(); ++k) {
        if (k > 0 && segs[k].m == prev_match)
          merged.back().e = segs[k].e;
        else
          merged.push_back(segs[k]);
        prev_match = segs[k].m;
      }
      break;
  }
  for (const Seg& s : merged)
    if (s.e > s.b) out.push_back(w.substr(s.b, s.e - s.b));
}

// Pre-tokenises normalised text (ByteLevel's prefix space, the Split steps) and encodes each word.
void BpeTokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  std::string prefixed;
  if (add_prefix_space && !text.empty() && text[0] != ' ') {
    prefixed = " " + std::string(text);
    text = prefixed;
  }
  if (splits.size() == 1 && splits[0].behavior == SplitBehavior::kIsolated && !splits[0].invert) {
    // The usual case (one regex, matches and gaps both kept): no intermediate lists.
    std::vector<Span>& spans = scratch().spans;
    spans.clear();
    splits[0].regex->find_all(text, spans);
    size_t at = 0;
    for (const Span& s : spans) {
      if (s.begin > at) encode_word(text.substr(at, s.begin - at), out);
      encode_word(text.substr(s.begin, s.end - s.begin), out);
      at = s.end;
    }
    if (at < text.size()) encode_word(text.substr(at), out);
    return;
  }
  std::vector<std::string_view> words{text}, next;
  for (const SplitStep& step : splits) {
    next.clear();
    for (std::string_view w : words) split_word(step, w, next);
    words.swap(next);
  }
  for (std::string_view w : words)
    if (!w.empty()) encode_word(w, out);
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() > kCacheWordBytes) {
    bpe_word(word, out);
    return;
  }
  const size_t hash = std::hash<std::string_view>{}(word);
  if (cache_.get(hash, word, out)) return;
  const size_t start = out.size();
  bpe_word(word, out);
  cache_.put(hash, word, std::span<const int32_t>(out.data() + start, out.size() - start));
}

// One pre-tokenised word (raw bytes when byte-level) -> ids, without the cache.
void BpeTokenizer::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<Symbol>& sy = scratch().symbols;
  sy.clear();
  auto add = [&](int32_t id, size_t len) {
    const int32_t i = static_cast<int32_t>(sy.size());
    sy.push_back({id, i - 1, i + 1, static_cast<uint32_t>(len)});
  };
  bool fast = byte_level && continuing_subword_prefix.empty() && end_of_word_suffix.empty();
  if (fast)
    for (unsigned char b : word) fast = fast && byte_ids_[b] >= 0;
  std::string mapped;  // the word in the vocabulary's alphabet, when needed
  if (!fast || ignore_merges) {
    if (byte_level) {
      const char32_t* alpha = byte_level_alphabet();
      mapped.reserve(word.size() * 2);
      for (unsigned char b : word) utf8_append(mapped, alpha[b]);
    } else {
      mapped = word;
    }
  }
  if (ignore_merges) {
    if (const int32_t id = vocab_.find(mapped); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (fast) {
    for (unsigned char b : word) add(byte_ids_[b], 1);
  } else {
    // HF's general path: one symbol per character (with the subword prefix / word suffix), byte
    // fallback or the unknown token for characters outside the vocabulary.
    int32_t unk_pending = -1;
    size_t unk_len = 0;
    auto flush_unk = [&] {
      if (unk_pending >= 0) add(unk_pending, unk_len);
      unk_pending = -1;
    };
    for (size_t i = 0; i < mapped.size();) {
      const size_t b = i;
      utf8_next(mapped, i);
      std::string s;
      if (b > 0) s += continuing_subword_prefix;
      s.append(mapped, b, i - b);
      if (i == mapped.size()) s += end_of_word_suffix;
      const size_t byte_len = i - b;
      if (const int32_t id = vocab_.find(s); id >= 0) {
        flush_unk();
        add(id, byte_len);
        continue;
      }
      if (byte_fallback) {
        bool ok = true;
        for (unsigned char c : s) ok = ok && fallback_ids_[c] >= 0;
        if (ok) {
          flush_unk();
          for (unsigned char c : s) add(fallback_ids_[c], 1);
          continue;
        }
      }
      if (unk_id_ >= 0) {
        if (unk_pending >= 0 && fuse_unk) {
          unk_len += byte_len;
        } else {
          flush_unk();
          unk_pending = unk_id_;
          unk_len = byte_len;
        }
      }
    }
    flush_unk();
  }
  if (sy.empty()) return;
  sy.back().next = -1;
  merge(sy, out);
}

void BpeTokenizer::merge(std::vector<Symbol>& sy, std::vector<int32_t>& out) const {
  std::vector<QueueItem>& heap = scratch().heap;
  heap.clear();
  const auto later = [](const QueueItem& a, const QueueItem& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  for (size_t i = 0; i + 1 < sy.size(); ++i) merges.prefetch(sy[i].id, sy[i + 1].id);
  for (size_t i = 0; i + 1 < sy.size(); ++i)
    if (const auto* m = merges.find(sy[i].id, sy[i + 1].id))
      heap.push_back({m->rank, static_cast<int32_t>(i), m->id, sy[i].id, sy[i + 1].id});
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const QueueItem top = heap.back();
    heap.pop_back();
    Symbol& s = sy[top.pos];
    if (s.len == 0 || s.next < 0) continue;
    Symbol& r = sy[s.next];
    // HF's staleness test: the pair now at pos must merge into the same token. An unchanged pair
    // trivially does; only a changed one needs the lookup.
    if (s.id != top.left || r.id != top.right) {
      const auto* m = merges.find(s.id, r.id);
      if (!m || m->id != top.new_id) continue;
    }
    s.id = top.new_id;
    s.len += r.len;
    r.len = 0;
    s.next = r.next;
    if (s.next >= 0) sy[s.next].prev = top.pos;
    if (s.prev >= 0) merges.prefetch(sy[s.prev].id, s.id);
    if (s.next >= 0) merges.prefetch(s.id, sy[s.next].id);
    if (s.prev >= 0)
      if (const auto* p = merges.find(sy[s.prev].id, s.id)) {
        heap.push_back({p->rank, s.prev, p->id, sy[s.prev].id, s.id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    if (s.next >= 0)
      if (const auto* n = merges.find(s.id, sy[s.next].id)) {
        heap.push_back({n->rank, top.pos, n->id, s.id, sy[s.next].id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
  }
  for (const Symbol& s : sy)
    if (s.len) out.push_back(s.id);
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string raw;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || tokens_[id].empty()) continue;
    if (skip_special_tokens && special_flag_[id]) continue;
    raw += bytes_[id];
  }
  return utf8_sanitize(raw);
}

// ---- loaders -----------------------------------------------------------------------------

void parse_normalizer(const nlohmann::json& n, const std::string& path, std::vector<NormOp>& ops) {
  if (n.is_null()) return;
  const std::string type = n.value("type", "");
  if (type == "NFC")
    ops.push_back(NormOp::kNFC);
  else if (type == "NFD")
    ops.push_back(NormOp::kNFD);
  else if (type == "NFKC")
    ops.push_back(NormOp::kNFKC);
  else if (type == "NFKD")
    ops.push_back(NormOp::kNFKD);
  else if (type == "Lowercase")
    ops.push_back(NormOp::kLowercase);
  else if (type == "Sequence")
    for (const auto& s : n.at("normalizers")) parse_normalizer(s, path, ops);
  else
    throw Unsupported(fmt::format("{}: normalizer {:?} is not supported for BPE", path, type));
}

void parse_pre_tokenizer(const nlohmann::json& p, const std::string& path, BpeTokenizer& t,
                         bool& saw_byte_level) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  if (saw_byte_level)
    throw Unsupported(
        fmt::format("{}: pre_tokenizer {:?} after ByteLevel is not supported", path, type));
  if (type == "Sequence") {
    for (const auto& s : p.at("pretokenizers")) parse_pre_tokenizer(s, path, t, saw_byte_level);
  } else if (type == "Split") {
    SplitStep step;
    const auto& pat = p.at("pattern");
    if (pat.contains("Regex"))
      step.regex = std::make_unique<Regex>(pat["Regex"].get<std::string>(), false, path);
    else if (pat.contains("String"))
      step.regex = std::make_unique<Regex>(pat["String"].get<std::string>(), true, path);
    else
      fail("{}: Split pattern must have \"Regex\" or \"String\", found {}", path, pat.dump());
    const std::string b = p.value("behavior", "Isolated");
    if (b == "Removed")
      step.behavior = SplitBehavior::kRemoved;
    else if (b == "Isolated")
      step.behavior = SplitBehavior::kIsolated;
    else if (b == "MergedWithPrevious")
      step.behavior = SplitBehavior::kMergedWithPrevious;
    else if (b == "MergedWithNext")
      step.behavior = SplitBehavior::kMergedWithNext;
    else if (b == "Contiguous")
      step.behavior = SplitBehavior::kContiguous;
    else
      fail("{}: Split behavior {:?} is unknown", path, b);
    step.invert = p.value("invert", false);
    t.splits.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    saw_byte_level = true;
    if (p.value("add_prefix_space", false)) {
      if (!t.splits.empty())
        throw Unsupported(
            fmt::format("{}: ByteLevel add_prefix_space after a Split is not supported", path));
      t.add_prefix_space = true;
    }
    if (p.value("use_regex", true)) {
      SplitStep step;
      step.regex = std::make_unique<Regex>(kGpt2Pattern, false, path);
      t.splits.push_back(std::move(step));
    }
  } else {
    throw Unsupported(fmt::format("{}: pre_tokenizer {:?} is not supported for BPE", path, type));
  }
}

std::unique_ptr<BpeTokenizer> new_bpe() {
  return std::make_unique<BpeTokenizer>();
}

}  // namespace

std::unique_ptr<Tokenizer> bpe_from_tokenizer_json(const TokenizerJson& tj, const std::string& path,
                                                   const TokenizerConfig& cfg) {
  (void)cfg;  // HF's fast tokenizers take add_bos_token etc. from the post-processor instead
  const nlohmann::json& j = tj.doc;
  const auto& model = j.at("model");
  auto t = new_bpe();
  bool saw_byte_level = false;
  parse_normalizer(j.contains("normalizer") ? j["normalizer"] : nlohmann::json(), path,
                   t->normalizer);
  parse_pre_tokenizer(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : nlohmann::json(), path, *t,
                      saw_byte_level);
  const auto& dec = j.contains("decoder") ? j["decoder"] : nlohmann::json();
  if (!saw_byte_level || !dec.is_object() || dec.value("type", "") != "ByteLevel")
    throw Unsupported(fmt::format(
        "{}: only byte-level BPE is supported (ByteLevel pre-tokenizer and decoder)", path));
  t->byte_level = true;
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() != 0.0)
    throw Unsupported(fmt::format("{}: BPE dropout is not supported", path));
  auto str = [&](const char* key) {
    return model.contains(key) && model[key].is_string() ? model[key].get<std::string>()
                                                         : std::string();
  };
  t->unk_token = str("unk_token");
  t->continuing_subword_prefix = str("continuing_subword_prefix");
  t->end_of_word_suffix = str("end_of_word_suffix");
  t->fuse_unk = model.value("fuse_unk", false);
  t->byte_fallback = model.value("byte_fallback", false);
  t->ignore_merges = model.value("ignore_merges", false);

  if (!tj.has_vocab || !tj.has_merges) fail("{}: model.vocab and model.merges are required", path);
  t->set_vocab(tj.vocab, path);
  t->merges.reserve(tj.merges.size());
  for (size_t rank = 0; rank < tj.merges.size(); ++rank) {
    const auto& [a, b] = tj.merges[rank];
    check_merge(t->add_merge(a, b, static_cast<int32_t>(rank)), path, a, b);
  }
  std::vector<AddedToken> added;
  if (j.contains("added_tokens"))
    for (const auto& a : j["added_tokens"]) added.push_back(added_token_from_json(a, -1, path));
  t->set_added_tokens(std::move(added));
  t->finish();
  BpeTokenizer* raw = t.get();
  t->affixes =
      parse_post_processor(j.contains("post_processor") ? j["post_processor"] : nlohmann::json(),
                           path, [raw](const std::string& s) { return raw->token_to_id(s); });
  return t;
}

std::unique_ptr<Tokenizer> bpe_from_vocab_merges(const std::string& dir,
                                                 const TokenizerConfig& cfg) {
  const std::string vocab_path = dir + "/vocab.json", merges_path = dir + "/merges.txt";
  const auto vocab = read_vocab_json(vocab_path);
  const std::string merges_text = read_text_file(merges_path);
  // Qwen2Tokenizer (the Qwen pattern and NFC) per tokenizer_config.json; without a config, a
  // merges.txt without GPT-2's "#version" header is taken as Qwen's.
  const bool has_header = merges_text.rfind("#version", 0) == 0;
  const bool qwen = cfg.tokenizer_class.empty()
                        ? !has_header
                        : cfg.tokenizer_class.rfind("Qwen2Tokenizer", 0) == 0;
  auto t = new_bpe();
  if (qwen) t->normalizer.push_back(NormOp::kNFC);
  SplitStep step;
  step.regex = std::make_unique<Regex>(qwen ? kQwen2Pattern : kGpt2Pattern, false, vocab_path);
  t->splits.push_back(std::move(step));
  const int32_t model_size = static_cast<int32_t>(vocab.size());
  t->set_vocab(vocab, vocab_path);
  size_t line_no = 0;
  int32_t rank = 0;
  for (size_t pos = 0; pos < merges_text.size();) {
    size_t eol = merges_text.find('\n', pos);
    if (eol == std::string::npos) eol = merges_text.size();
    std::string_view line(merges_text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos || line.find(' ', sp + 1) != std::string_view::npos)
      fail("{} line {}: expected two tokens separated by one space", merges_path, line_no);
    const std::string a(line.substr(0, sp)), b(line.substr(sp + 1));
    const int rc = t->add_merge(a, b, rank++);
    if (rc) check_merge(rc, fmt::format("{} line {}", merges_path, line_no), a, b);
  }
  // Added tokens: tokenizer_config's added_tokens_decoder, else "<|endoftext|>" (the default
  // special token of both GPT2Tokenizer and Qwen2Tokenizer, appended after the vocabulary).
  std::vector<AddedToken> added = cfg.added_tokens;
  for (AddedToken& a : added) a.normalized = false;  // slow tokenizers split them before NFC
  if (added.empty()) {
    AddedToken eot;
    eot.content = "<|endoftext|>";
    eot.special = true;
    eot.id = t->token_to_id(eot.content);
    if (eot.id < 0) eot.id = model_size;
    added.push_back(eot);
  }
  t->set_added_tokens(std::move(added));
  t->finish();
  if (cfg.add_prefix_space.value_or(false)) t->add_prefix_space = true;
  // GPT2Tokenizer's add_bos_token / add_eos_token (Qwen2Tokenizer adds nothing).
  if (cfg.add_bos_token.value_or(false) && cfg.bos_token && t->token_to_id(*cfg.bos_token) >= 0)
    t->affixes.prefix.push_back(t->token_to_id(*cfg.bos_token));
  if (cfg.add_eos_token.value_or(false) && cfg.eos_token && t->token_to_id(*cfg.eos_token) >= 0)
    t->affixes.suffix.push_back(t->token_to_id(*cfg.eos_token));
  return t;
}

}  // namespace peft::tok
