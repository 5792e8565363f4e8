// Range checks for numeric flags whose messages say the range in words: with main.cpp's error
// line, `--epochs 0` reads `peft: error: --epochs must be ≥ 1 (found 0)`, not CLI11's
// `Value 0 not in range 0.000000 to 1797…`. Integer bounds (at_least(1)) also require a whole
// number; floating bounds (at_least(0.0)) accept any finite number. The same checks run on
// values that come from a YAML run config, which main.cpp turns into flags.
#pragma once

#include <CLI/CLI.hpp>

#include <limits>
#include <optional>
#include <type_traits>

namespace peft::cli {

// The general form: lo / hi absent mean unbounded; *_open excludes the bound itself.
struct NumberRange {
  std::optional<double> lo, hi;
  bool lo_open = false, hi_open = false;
  bool integer = false;
};
CLI::Validator number_in(const NumberRange& range);

// value ≥ lo ("must be ≥ 1").
template <class T>
CLI::Validator at_least(T lo) {
  NumberRange r;
  r.lo = double(lo);
  r.integer = std::is_integral_v<T>;
  return number_in(r);
}
// value > 0 ("must be > 0").
inline CLI::Validator positive() {
  NumberRange r;
  r.lo = 0.0;
  r.lo_open = true;
  return number_in(r);
}
// lo ≤ value ≤ hi ("must be between 0 and 1").
template <class T>
CLI::Validator in_range(T lo, T hi) {
  NumberRange r;
  r.lo = double(lo);
  r.hi = double(hi);
  r.integer = std::is_integral_v<T>;
  return number_in(r);
}
// lo ≤ value < hi ("must be ≥ 0 and < 1").
inline CLI::Validator at_least_and_below(double lo, double hi) {
  NumberRange r;
  r.lo = lo;
  r.hi = hi;
  r.hi_open = true;
  return number_in(r);
}

// The words the validators put after the flag name; main.cpp joins "--epochs" and "must be …"
// without CLI11's colon.
inline constexpr const char* kMustBe = "must be ";

}  // namespace peft::cli
