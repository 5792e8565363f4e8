// Shared by the libFuzzer targets (docs/bad-input.md, "Fuzzing"): a private scratch folder per process and a
// way to put the fuzzer's bytes into a file there, since the readers under test take paths.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

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

// Writes the input to scratch_dir()/name and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), std::streamsize(size));
  return path;
}

// Runs `body`; a peft::Error is the expected outcome of bad input (the CLI prints it as one
// "peft: error:" line). Anything else — another exception type, a sanitizer report, a signal,
// running out of memory — is a finding.
template <typename F>
int run_one(F&& body) {
  try {
    body();
  } catch (const peft::Error&) {
  }
  return 0;
}

}  // namespace peft::fuzz
