#include "cli/validate.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace peft::cli {
namespace {

// 1, 0.5, 2e-4: the shortest text that reads back as the bound.
std::string number_text(double v) {
  return fmt::format("{}", v);
}

std::string describe(const NumberRange& r) {
  std::string words;
  if (r.lo && r.hi && !r.lo_open && !r.hi_open)
    words = fmt::format("between {} and {}", number_text(*r.lo), number_text(*r.hi));
  else if (r.lo && r.hi)
    words = fmt::format("{} {} and {} {}", r.lo_open ? ">" : "≥", number_text(*r.lo),
                        r.hi_open ? "<" : "≤", number_text(*r.hi));
  else if (r.lo)
    words = fmt::format("{} {}", r.lo_open ? ">" : "≥", number_text(*r.lo));
  else if (r.hi)
    words = fmt::format("{} {}", r.hi_open ? "<" : "≤", number_text(*r.hi));
  return words;
}

}  // namespace

CLI::Validator number_in(const NumberRange& range) {
  const std::string words = describe(range);
  CLI::Validator v(
      [range, words](std::string& text) -> std::string {
        const char* begin = text.c_str();
        char* end = nullptr;
        errno = 0;
        const double x = std::strtod(begin, &end);
        const bool parsed = end != begin && *end == '\0' && errno != ERANGE && std::isfinite(x);
        char* int_end = nullptr;
        (void)std::strtoll(begin, &int_end, 10);  // whole numbers as CLI11 reads them: no "2.0"
        const bool whole = parsed && int_end != begin && *int_end == '\0' && errno != ERANGE;
        if (!parsed || (range.integer && !whole))
          return fmt::format("{}{} {} (found '{}')", kMustBe,
                             range.integer ? "a whole number" : "a number", words, text);
        const bool low = range.lo && (range.lo_open ? x <= *range.lo : x < *range.lo);
        const bool high = range.hi && (range.hi_open ? x >= *range.hi : x > *range.hi);
        if (low || high) return fmt::format("{}{} (found {})", kMustBe, words, text);
        return {};
      },
      words);
  return v;
}

}  // namespace peft::cli
