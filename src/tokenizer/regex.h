// A compiled PCRE2 pattern (UTF + UCP, JIT when available) that finds all non-overlapping matches,
// with the semantics of the Oniguruma regexes HF tokenizers uses for its Split pre-tokenizer.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace peft::tok {

struct Span {
  size_t begin, end;
};

class Regex {
 public:
  // `literal`: the pattern is a plain string, not a regex. `what` names the source in errors.
  Regex(const std::string& pattern, bool literal, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends every match of the pattern in text (valid UTF-8), left to right, to out.
  void find_all(std::string_view text, std::vector<Span>& out) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  struct Code;
  std::unique_ptr<Code> code_;
};

// Rewrites \s and \S so that they mean the Unicode White_Space property, as in Oniguruma (PCRE2's
// UCP \s also matches U+180E). Exposed for the tests.
std::string onig_whitespace_classes(const std::string& pattern);

}  // namespace peft::tok
