// peft: the command-line front end. Exit status: 0 success, 1 the work failed, 2 bad usage.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <new>

#include "cli/command.h"
#include "cli/help.h"
#include "cli/setup.h"
#include "cli/validate.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/openmp_wait.h"
#include "core/threads.h"
#include "dist/comm.h"
#include "peft/peft.hpp"

namespace peft::cli {

std::vector<Command>& command_registry() {
  static std::vector<Command> registry;
  return registry;
}

bool stderr_is_terminal() {
  return isatty(STDERR_FILENO) != 0;
}

namespace {

int usage_error(const std::string& message) {
  std::fprintf(stderr, "peft: error: %s\n", message.c_str());
  return 2;
}

int unknown_command(const CLI::App& app, const std::string& name) {
  std::vector<std::string> names{"help", "version"};
  for (const CLI::App* c : commands_in_workflow_order(app))
    if (!c->get_group().empty()) names.push_back(c->get_name());
  const std::string guess = nearest(name, names);
  if (!guess.empty())
    return usage_error("unknown command '" + name + "'; did you mean '" + guess + "'?");
  return usage_error("unknown command '" + name + "' (see 'peft help' for the commands)");
}

// One line for a parse error of `command` (null: the top level). CLI11's "--epochs: must be ≥ 1"
// loses its colon; an unknown flag names its nearest neighbour; a missing flag points at --help.
std::string parse_error_line(const CLI::ParseError& e, const CLI::App* command,
                             const std::vector<std::string>& args) {
  std::string what = e.what();
  const std::string must = std::string(": ") + kMustBe;
  if (const size_t at = what.find(must); at != std::string::npos && what.rfind("--", 0) == 0)
    return what.erase(at, 1);
  if (command == nullptr) return what;
  const std::string see = "see 'peft " + command->get_name() + " --help'";
  if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
    for (size_t i = 1; i < args.size(); ++i) {
      const std::string flag = args[i].substr(0, args[i].find('='));
      if (flag.rfind("--", 0) != 0 || command->get_option_no_throw(flag) != nullptr) continue;
      if (what.find(flag) == std::string::npos) continue;
      const std::string guess = nearest(flag, long_flag_names(*command));
      return "unknown flag '" + flag + "' for 'peft " + command->get_name() + "'" +
             (guess.empty() ? " (" + see + ")" : "; did you mean '" + guess + "'?");
    }
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) return what + " (" + see + ")";
  return what;
}

// A bug must still end in one error line and exit status 1, never a bare signal or "terminate
// called ...": fatal signals and std::terminate print the line and leave with _exit (no
// destructors run, so no half-written file is committed: every output is an AtomicFile whose
// temporary is only renamed by commit()). Sanitizer builds keep their own reports.
#if defined(__SANITIZE_ADDRESS__)
#define PEFT_KEEP_CRASH_REPORTS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PEFT_KEEP_CRASH_REPORTS 1
#endif
#endif

void write_stderr(const char* s) {
  ssize_t ignored = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}

extern "C" void on_fatal_signal(int sig) {
  write_stderr("peft: error: internal error: ");
  write_stderr(sig == SIGSEGV  ? "invalid memory access (SIGSEGV)"
               : sig == SIGBUS ? "bus error (SIGBUS: a mapped file shrank or the disk failed?)"
               : sig == SIGFPE ? "arithmetic fault (SIGFPE)"
               : sig == SIGILL ? "illegal instruction (SIGILL: built for another CPU?)"
                               : "aborted (SIGABRT)");
  write_stderr("; this is a bug in peft, please report it with the command line\n");
  ::_exit(1);
}

void on_terminate() {
  write_stderr("peft: error: internal error: ");
  try {
    if (std::exception_ptr e = std::current_exception()) std::rethrow_exception(e);
    write_stderr("terminate called without an exception");
  } catch (const std::exception& e) {
    write_stderr("uncaught exception: ");
    write_stderr(e.what());
  } catch (...) {
    write_stderr("uncaught exception of unknown type");
  }
  write_stderr("; this is a bug in peft, please report it with the command line\n");
  ::_exit(1);
}

void install_crash_handlers() {
  std::set_terminate(on_terminate);
#ifndef PEFT_KEEP_CRASH_REPORTS
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(sig, on_fatal_signal);
#endif
  peft::install_interrupt_handler();
}

}  // namespace
}  // namespace peft::cli

int main(int argc, char** argv) {
  using namespace peft::cli;
  peft::choose_openmp_wait(argv);
  install_crash_handlers();
  CLI::App app{"parameter-efficient fine-tuning of language models, in C++", "peft"};
  app.formatter(make_help_formatter());
  app.require_subcommand(1);
  app.set_version_flag("--version", kVersion);
  int threads = 0;
  std::vector<std::pair<CLI::App*, Runner>> runners;
  for (const Command& c : command_registry()) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    sub->option_defaults()->always_capture_default();  // help shows "[default: 1]"
    Runner run = c.setup(*sub);
    sub->add_option("--threads", threads,
                    "worker threads (0: $OMP_NUM_THREADS if set, else all cores)")
        ->check(at_least(0))
        ->group("Runtime");  // last in the help
    runners.emplace_back(sub, std::move(run));
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  // The overview and the words CLI11 does not know: peft, peft help [COMMAND], peft version.
  if (args.empty()) {
    std::fputs(top_level_usage(app).c_str(), stderr);
    return 2;
  }
  if (args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    if (args.size() == 1 || args[0] != "help" || args[1] == "help" || args[1] == "version") {
      std::fputs(top_level_usage(app).c_str(), stdout);
      return 0;
    }
    for (auto& [sub, run] : runners)
      if (sub->get_name() == args[1]) {
        std::fputs(sub->help("peft").c_str(), stdout);  // as `peft CMD --help`
        return 0;
      }
    return unknown_command(app, args[1]);
  }
  if (args[0] == "version" || args[0] == "--version") {
    std::printf("%s\n", kVersion);
    return 0;
  }
  CLI::App* command = nullptr;
  for (auto& [sub, run] : runners)
    if (sub->get_name() == args[0]) command = sub;
  if (command == nullptr && args[0].rfind("-", 0) != 0) return unknown_command(app, args[0]);
  try {
    // A run config (--config RUN.yaml) supplies the flags the command line leaves out.
    auto config = std::find(args.begin(), args.end(), "--config");
    if (command != nullptr && config != args.end() && config + 1 != args.end()) {
      // A copy: appending to args may move its strings.
      const std::string config_path = *(config + 1);
      try {
        append_yaml_config(config_path, *command, args);
      } catch (const peft::Error& e) {
        return usage_error(e.what());
      } catch (const std::exception& e) {  // yaml-cpp's conversions (a key that is a list, ...)
        return usage_error(config_path + ": " + e.what());
      }
    }
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11's vector form
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    return usage_error(parse_error_line(e, command, args));
  }
  // Under mpirun: one line per failing rank (rank 0's without a prefix), then every rank stops,
  // so none waits forever in a collective call for one that has left.
  auto failed = [](const char* what) {
    if (peft::dist::rank() > 0)
      std::fprintf(stderr, "peft: error: rank %d: %s\n", peft::dist::rank(), what);
    else
      std::fprintf(stderr, "peft: error: %s\n", what);
    std::fflush(stderr);
    peft::dist::abort_all(1);
    return 1;
  };
  try {
    peft::dist::init();
    // Several ranks on one machine share its cores unless --threads or OMP_NUM_THREADS says
    // otherwise.
    const char* omp_threads = std::getenv("OMP_NUM_THREADS");
    if (threads == 0 && (!omp_threads || !*omp_threads) && peft::dist::local_size() > 1)
      threads = std::max(1, peft::num_cores() / peft::dist::local_size());
    peft::set_num_threads(threads);
    for (auto& [sub, run] : runners)
      if (sub->parsed()) {
        const int status = run();
        peft::dist::finalize();
        return status;
      }
  } catch (const peft::api::Interrupted& e) {  // a training run stopped by SIGINT / SIGTERM
    std::fprintf(stderr, "peft: %s\n", e.what());
    return 128 + e.signal();
  } catch (const peft::Interrupted& e) {
    std::fprintf(stderr, "peft: %s\n", e.what());
    return 128 + peft::interrupt_signal();
  } catch (const peft::Error& e) {
    return failed(e.what());
  } catch (const std::bad_alloc&) {
    return failed("out of memory");
  } catch (const std::filesystem::filesystem_error& e) {
    return failed(e.what());
  } catch (const std::exception& e) {
    return failed(e.what());
  } catch (...) {
    return failed("internal error: unknown exception");
  }
  return 2;
}
