// Errors. User and data errors throw peft::Error with a message that names the file, key or
// tensor, what was found and what was expected; only cli/ catches it. Internal invariants use
// PEFT_CHECK, which is always on and throws peft::InternalError with file:line. The library never
// calls exit().
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace peft {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InternalError : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

[[noreturn]] void check_failed(const char* file, int line, const char* condition,
                               const std::string& message);

}  // namespace peft

// PEFT_CHECK(cond, "format {}", args...): an invariant the code itself guarantees.
#define PEFT_CHECK(cond, ...)                                                               \
  do {                                                                                      \
    if (!(cond)) ::peft::check_failed(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)
