// UTF-8 and Unicode helpers for the tokenizers (utf8proc underneath).
//
// Invalid UTF-8 policy (all tokenizers): text is made valid before tokenising by replacing each
// maximal invalid subsequence with U+FFFD, exactly as Python's bytes.decode("utf-8", "replace")
// and Rust's String::from_utf8_lossy do, so our ids equal what HF gives for the decoded string.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace peft::tok {

// Decodes the code point at s[i] and advances i. The input must be valid UTF-8.
inline char32_t utf8_next(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  auto cont = [&](size_t k) {
    return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F);
  };
  char32_t cp;
  if (b0 < 0xE0) {
    cp = (static_cast<char32_t>(b0 & 0x1F) << 6) | cont(1);
    i += 2;
  } else if (b0 < 0xF0) {
    cp = (static_cast<char32_t>(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2);
    i += 3;
  } else {
    cp = (static_cast<char32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
    i += 4;
  }
  return cp;
}

// Byte length of the UTF-8 sequence that starts with lead byte b (valid input).
inline size_t utf8_len(unsigned char b) {
  return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

void utf8_append(std::string& out, char32_t cp);

// Number of bytes of valid UTF-8 at the start of s (== s.size() when all of s is valid).
size_t utf8_valid_prefix(std::string_view s);
inline bool utf8_valid(std::string_view s) {
  return utf8_valid_prefix(s) == s.size();
}

// s with every maximal invalid subsequence replaced by U+FFFD (see the policy above).
std::string utf8_sanitize(std::string_view s);

inline bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
std::string unicode_normalize(std::string_view s, NormalForm form);
// True when s is certainly already in NFC (a fast, conservative check; false means "maybe not").
bool nfc_quick_yes(std::string_view s);

// Unicode properties, as HF tokenizers (Rust char methods) define them.
bool is_white_space(char32_t c);      // the Unicode White_Space property (Rust char::is_whitespace)
bool is_alphanumeric(char32_t c);     // categories L* and N* (Rust char::is_alphanumeric)
bool is_punctuation(char32_t c);      // categories P*
bool is_control_like(char32_t c);     // categories Cc, Cf, Co, Cs (not Cn, as in HF)
bool is_nonspacing_mark(char32_t c);  // category Mn
// Full lower-case mapping (Rust char::to_lowercase), appended as UTF-8.
void append_lowercase(std::string& out, char32_t c);

}  // namespace peft::tok
