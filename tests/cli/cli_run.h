// Running the `peft` binary from tests: exit status, stdout and stderr of one command.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace peft::testing {

struct CommandResult {
  int status = -1;  // exit code, or 128 + signal
  std::string out, err;
};

inline std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs `program` (a shell word, or words: "cd DIR && ./peft") with `args` (a shell-quoted
// string) in a shell; standard input from `stdin_path` (default: empty).
inline CommandResult run_program(const std::string& program, const std::string& args,
                                 const std::string& stdin_path = "/dev/null") {
  static int counter = 0;
  const std::string base = ::testing::TempDir() + "/peft_cli_" + std::to_string(::getpid()) + "_" +
                           std::to_string(counter++);
  const std::string cmd =
      program + " " + args + " >" + base + ".out 2>" + base + ".err <" + stdin_path;
  const int raw = std::system(cmd.c_str());
  CommandResult r;
  if (WIFEXITED(raw))
    r.status = WEXITSTATUS(raw);
  else if (WIFSIGNALED(raw))
    r.status = 128 + WTERMSIG(raw);
  r.out = read_all(base + ".out");
  r.err = read_all(base + ".err");
  std::filesystem::remove(base + ".out");
  std::filesystem::remove(base + ".err");
  return r;
}

// Runs PEFT_BINARY with `args` (a shell-quoted string).
inline CommandResult run_peft(const std::string& args,
                              const std::string& stdin_path = "/dev/null") {
  return run_program(PEFT_BINARY, args, stdin_path);
}

inline std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

inline std::string fresh_dir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace peft::testing
