// How `peft` explains itself: the top-level usage (commands in workflow order), the help
// formatter every command shares (flag groups, defaults, ranges), and "did you mean" for
// mistyped commands and flags.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

namespace peft::cli {

inline constexpr const char* kVersion = "peft.cpp 0.1.0";

// Help for every command: `--epochs INT (≥ 1)   passes over the data [default: 1]`.
std::shared_ptr<CLI::Formatter> make_help_formatter();

// `peft`, `peft help`, `peft --help`: what peft is, the commands in workflow order, and where to
// read more. Hidden commands (an empty group) are left out.
std::string top_level_usage(const CLI::App& app);

// The commands in the order of a fine-tuning workflow (init … export); commands this list does
// not name follow in their order of registration.
std::vector<const CLI::App*> commands_in_workflow_order(const CLI::App& app);

// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
// neighbours each cost 1 (so "trian" is 1 away from "train").
size_t edit_distance(const std::string& a, const std::string& b);

// The candidate nearest to `word` when it is near enough to be a likely typo, else "".
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

// Long flag names (--epochs) of a command, for "did you mean".
std::vector<std::string> long_flag_names(const CLI::App& command);

}  // namespace peft::cli
