// peft: the command-line front end. Exit status: 0 success, 1 the work failed, 2 bad usage.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>

#include "cli/command.h"
#include "cli/setup.h"
#include "core/error.h"
#include "core/threads.h"

namespace peft::cli {

std::vector<Command>& command_registry() {
  static std::vector<Command> registry;
  return registry;
}

bool stderr_is_terminal() {
  return isatty(STDERR_FILENO) != 0;
}

}  // namespace peft::cli

int main(int argc, char** argv) {
  using namespace peft::cli;
  CLI::App app{"peft.cpp: parameter-efficient fine-tuning of language models, in C++", "peft"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "peft.cpp 0.1.0");
  int threads = 0;
  std::vector<std::pair<CLI::App*, Runner>> runners;
  for (const Command& c : command_registry()) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    sub->add_option("--threads", threads, "worker threads (default: all cores)");
    runners.emplace_back(sub, c.setup(*sub));
  }
  try {
    // A run config (--config RUN.yaml) supplies the flags the command line leaves out.
    std::vector<std::string> args(argv + 1, argv + argc);
    auto config = std::find(args.begin(), args.end(), "--config");
    if (!args.empty() && config != args.end() && config + 1 != args.end()) {
      for (auto& [sub, run] : runners)
        if (sub->get_name() == args[0]) {
          try {
            append_yaml_config(*(config + 1), *sub, args);
          } catch (const peft::Error& e) {
            std::fprintf(stderr, "peft: error: %s\n", e.what());
            return 2;
          }
        }
    }
    std::reverse(args.begin(), args.end());  // CLI11 takes the vector form in reverse order
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "peft: error: %s\n", e.what());
    return 2;
  }
  try {
    peft::set_num_threads(threads);
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const peft::Error& e) {
    std::fprintf(stderr, "peft: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "peft: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "peft: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
