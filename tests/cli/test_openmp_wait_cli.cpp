// peft's default OpenMP spin count (src/core/openmp_wait.cpp): unless OMP_WAIT_POLICY or
// GOMP_SPINCOUNT is set, the program re-executes itself once with GOMP_SPINCOUNT=10000, keeping
// its arguments, output and exit status, however it was started. libgomp prints its settings at
// start-up under OMP_DISPLAY_ENV=VERBOSE, once per process image: two blocks mean one
// re-execution, and the last one shows the spin count libgomp runs with.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "cli_run.h"

namespace peft {
namespace {
using testing::run_peft;
using testing::run_program;

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

constexpr const char* kBegin = "OPENMP DISPLAY ENVIRONMENT BEGIN";
constexpr const char* kPeftDefault = "GOMP_SPINCOUNT=10000 (peft's default";

// The environment of one test: OMP_DISPLAY_ENV on, the wait variables unset, restored after.
class OpenmpWait : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables)
      if (const char* v = std::getenv(name)) saved_.emplace_back(name, v);
    for (const char* name : kVariables) unsetenv(name);
    setenv("OMP_DISPLAY_ENV", "VERBOSE", 1);
  }
  void TearDown() override {
    for (const char* name : kVariables) unsetenv(name);
    for (const auto& [k, v] : saved_) setenv(k.c_str(), v.c_str(), 1);
  }

  // `program version` ran once, through one re-execution that set peft's spin count, and
  // `program info --system --json` reports it.
  static void expect_reexecuted_once(const std::string& program) {
    const auto r = run_program(program, "version");
    EXPECT_EQ(r.status, 0) << program << "\n" << r.err;
    EXPECT_EQ(count(r.out, "\n"), 1) << r.out;  // the command ran once
    EXPECT_EQ(count(r.err, kBegin), 2) << r.err;
    const size_t last = r.err.rfind(kBegin);
    ASSERT_NE(last, std::string::npos) << r.err;
    EXPECT_NE(r.err.find("GOMP_SPINCOUNT = '10000'", last), std::string::npos) << r.err;
    const auto info = run_program(program, "info --system --json");
    ASSERT_EQ(info.status, 0) << info.err;
    const auto j = nlohmann::json::parse(testing::last_line(info.out));
    EXPECT_NE(j["openmp_wait"].get<std::string>().find(kPeftDefault), std::string::npos)
        << j.dump();
  }

  static constexpr const char* kVariables[] = {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                               "OMP_DISPLAY_ENV", "PEFT_OPENMP_WAIT_REEXEC"};
  std::vector<std::pair<std::string, std::string>> saved_;
};

TEST_F(OpenmpWait, ReexecutesOnceWithTheShortSpinByDefault) {
  expect_reexecuted_once(PEFT_BINARY);
}

// Either variable of the user's is left as it is and nothing is re-executed; `info --system` says
// which setting is in effect.
TEST_F(OpenmpWait, TheUsersSettingWinsAndNothingIsReexecuted) {
  setenv("GOMP_SPINCOUNT", "1234", 1);
  auto r = run_peft("version");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(count(r.err, kBegin), 1) << r.err;
  EXPECT_NE(r.err.find("GOMP_SPINCOUNT = '1234'"), std::string::npos) << r.err;
  auto info = run_peft("info --system");
  EXPECT_NE(info.out.find("GOMP_SPINCOUNT=1234 (environment)"), std::string::npos) << info.out;
  unsetenv("GOMP_SPINCOUNT");

  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  r = run_peft("version");
  EXPECT_EQ(count(r.err, kBegin), 1) << r.err;
  EXPECT_NE(r.err.find("OMP_WAIT_POLICY = 'PASSIVE'"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("GOMP_SPINCOUNT = '10000'"), std::string::npos) << r.err;
  info = run_peft("info --system");
  EXPECT_NE(info.out.find("OMP_WAIT_POLICY=PASSIVE (environment)"), std::string::npos) << info.out;
  EXPECT_EQ(info.out.find("GOMP_SPINCOUNT"), std::string::npos) << info.out;
}

TEST_F(OpenmpWait, AStrayMarkerNeitherLoopsNorClaimsTheUsersSetting) {
  // A marker inherited from elsewhere (a peft that started a peft with its environment) stops the
  // re-execution; only peft's own pair of values is reported as peft's.
  setenv("PEFT_OPENMP_WAIT_REEXEC", "10000", 1);
  auto r = run_peft("info --system --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count(r.err, kBegin), 1) << r.err;
  EXPECT_NE(r.out.find("libgomp's default"), std::string::npos) << r.out;
  setenv("GOMP_SPINCOUNT", "777", 1);
  r = run_peft("info --system --json");
  EXPECT_EQ(count(r.err, kBegin), 1) << r.err;
  EXPECT_NE(r.out.find("GOMP_SPINCOUNT=777 (environment)"), std::string::npos) << r.out;
}

TEST_F(OpenmpWait, WorksThroughASymlinkARelativePathPathLookupAndACopy) {
  // /proc/self/exe, not argv[0], names the program to re-execute: every way of starting it works.
  namespace fs = std::filesystem;
  const std::string dir = testing::fresh_dir("openmp_wait_paths");
  fs::create_symlink(PEFT_BINARY, dir + "/peft-link");
  expect_reexecuted_once(dir + "/peft-link");
  expect_reexecuted_once("cd '" + dir + "' && ./peft-link");
  expect_reexecuted_once("PATH='" + dir + "':\"$PATH\" peft-link");
  // An installed binary: a copy elsewhere, started by its own path.
  fs::create_directories(dir + "/prefix/bin");
  fs::copy_file(PEFT_BINARY, dir + "/prefix/bin/peft");
  expect_reexecuted_once(dir + "/prefix/bin/peft");
  fs::remove_all(dir);
}

TEST_F(OpenmpWait, TheProcessKeepsItsName) {
  // Executing /proc/self/exe names a process "exe"; the re-executed peft takes back the name it
  // was started by, which ps, top and `pgrep -x peft` show. peft tokenize waits on a FIFO while
  // the shell reads /proc/PID/comm, once the re-executed image (its environment holds the
  // marker) has had a moment to rename itself.
  namespace fs = std::filesystem;
  const std::string dir = testing::fresh_dir("openmp_wait_comm");
  fs::create_symlink(PEFT_BINARY, dir + "/peft-named");
  std::ofstream(dir + "/comm.sh")
      << "cd '" << dir << "' && mkfifo in || exit 1\n"
      << "./peft-named tokenize --model '" << PEFT_ASSETS_DIR
      << "/tokenizers/bert-base-uncased' --file in >/dev/null &\n"
      << "pid=$!\n"
      << "for i in $(seq 300); do\n"
      << "  grep -qa PEFT_OPENMP_WAIT_REEXEC /proc/$pid/environ 2>/dev/null &&\n"
      << "    [ \"$(cat /proc/$pid/comm)\" != exe ] && break\n"
      << "  sleep 0.1\n"
      << "done\n"
      << "cat /proc/$pid/comm\n"
      << "timeout 30 sh -c 'echo hi > in'\n"
      << "wait $pid\n";
  const auto r = run_program("sh", "'" + dir + "/comm.sh'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "peft-named\n") << r.err;
  fs::remove_all(dir);
}

TEST_F(OpenmpWait, ArgumentsOutputAndExitStatusAreKept) {
  // The same commands re-executed (no variable) and not (GOMP_SPINCOUNT set): identical
  // stdout, stderr and exit statuses, arguments with spaces and quotes intact.
  unsetenv("OMP_DISPLAY_ENV");
  const std::vector<std::string> commands = {"version", "info '/no such/dir with \"quotes\"'",
                                             "train --no-such-flag", "help init", "frobnicate"};
  for (const std::string& c : commands) {
    unsetenv("GOMP_SPINCOUNT");
    const auto re = run_peft(c);
    setenv("GOMP_SPINCOUNT", "300000", 1);
    const auto direct = run_peft(c);
    EXPECT_EQ(re.status, direct.status) << c;
    EXPECT_EQ(re.out, direct.out) << c;
    EXPECT_EQ(re.err, direct.err) << c;
  }
  unsetenv("GOMP_SPINCOUNT");
  const auto r = run_peft("info '/no such/dir with \"quotes\"'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("/no such/dir with \"quotes\""), std::string::npos) << r.err;
  EXPECT_EQ(run_peft("train --no-such-flag").status, 2);
}

}  // namespace
}  // namespace peft
