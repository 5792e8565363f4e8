// The subcommand registry: each file in cli/ registers one subcommand with PEFT_COMMAND. Its
// setup function declares the flags on the CLI11 subcommand and returns the function that runs
// it (returning the exit status). main.cpp owns parsing, --threads, and error reporting.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace peft::cli {

using Runner = std::function<int()>;
using Setup = std::function<Runner(CLI::App&)>;

struct Command {
  std::string name;
  std::string help;
  Setup setup;
};

std::vector<Command>& command_registry();

struct CommandRegistration {
  CommandRegistration(std::string name, std::string help, Setup setup) {
    command_registry().push_back({std::move(name), std::move(help), std::move(setup)});
  }
};

// True when stderr is a terminal (progress bars and tables only then).
bool stderr_is_terminal();

}  // namespace peft::cli

#define PEFT_CLI_CONCAT2(a, b) a##b
#define PEFT_CLI_CONCAT(a, b) PEFT_CLI_CONCAT2(a, b)
#define PEFT_COMMAND(name, help, setup)                                                        \
  static ::peft::cli::CommandRegistration PEFT_CLI_CONCAT(peft_command_, __LINE__)(name, help, \
                                                                                   setup)
