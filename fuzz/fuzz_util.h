// Shared by the libFuzzer targets (docs/bad-input.md, "Fuzzing"): a private scratch folder per
// process and a way to put the fuzzer's bytes into a file there, since the readers under test take
// paths.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "core/error.h"

namespace peft::fuzz {

inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const std::string d =
        (std::filesystem::temp_directory_path() / ("peft_fuzz_" + std::to_string(::getpid())))
            .string();
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

[[noreturn]] inline void finding(const char* type, const char* what) {
  std::fprintf(stderr, "peft fuzz: the contract allows only peft::Error; caught %s: %s\n", type,
               what);
  std::abort();
}

// Writes the input to scratch_dir()/name and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), std::streamsize(size));
  return path;
}

// Runs `body` under the targets' one contract: bad input may only end in a peft::Error (the CLI
// prints it as one "peft: error:" line). An InternalError (a PEFT_CHECK that failed: a bug, not
// bad input) or any other exception type is reported with its message and aborts, which
// libFuzzer records as a crash with the input; sanitizer reports, signals, leaks, timeouts and
// allocations past -malloc_limit_mb / -rss_limit_mb are findings of libFuzzer's own.
template <typename F>
int run_one(F&& body) {
  try {
    body();
  } catch (const peft::InternalError& e) {
    finding("peft::InternalError", e.what());
  } catch (const peft::Error&) {
  } catch (const std::exception& e) {
    finding(typeid(e).name(), e.what());
  } catch (...) {
    finding("a non-std exception", "");
  }
  return 0;
}

}  // namespace peft::fuzz
