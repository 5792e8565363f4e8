// The OpenMP wait policy of the `peft` program: a short spin before an idle worker sleeps.
//
// GNU libgomp (our OpenMP, and the one Debian's oneDNN runs on) lets an idle worker spin for
// GOMP_SPINCOUNT iterations of its busy-wait loop (300,000 by default when OMP_WAIT_POLICY is
// unset) before it sleeps on a futex, and reads that setting once, in its constructor, before
// main. On a machine where another process wants the cores, workers spinning at every barrier
// take the time slices the working threads need (docs/performance.md, "Robust under load"). So
// when the user has set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT, main() re-executes the
// program once before it does anything else, with GOMP_SPINCOUNT=kSpinCount and a marker added to
// the environment; the new process sees the marker, removes both variables again (libgomp has
// read them, and programs peft starts should inherit the user's environment) and runs.
//
// Why a re-execution: setting the variable in-process is too late for libgomp, and even a
// .preinit_array function is (it runs before libc's own initialisation, which resets `environ`
// to the one the kernel passed; tried: libgomp still shows 300000).
//
// What keeps it safe:
// - once: the marker stops a second re-execution, and it is set only when neither variable is;
// - the same program: /proc/self/exe is the running binary's inode, whatever path, symlink or
//   installed copy started it (argv[0] may be relative, a link, or resolved through PATH), and
//   even when a rebuild has replaced the file since;
// - the same process: execve keeps the PID, argv, open descriptors, CPU affinity, signal mask
//   and the rest of the environment, so a parent waiting on it, a shell's job control and
//   mpirun's launcher (which tracks the PID; the rank finds its PMIx server through
//   environment variables kept here, and MPI_Init comes later) see one process; its name
//   (/proc/PID/comm) is put back;
// - fail open: if execve fails (no /proc, a seccomp filter), peft runs on with libgomp's default
//   and the environment as it was.
// Not for valgrind (a re-executed program leaves it unless --trace-children=yes) or LLVM's
// libomp (which ignores GOMP_SPINCOUNT): there, set either variable and nothing is re-executed.
// The shared library (libpeft.so) cannot do this for an application: docs/performance.md gives
// the advice instead.
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "core/openmp_wait.h"

extern char** environ;

namespace peft {
namespace {

// A spin about 1/30 of libgomp's default: long enough to ride through the short waits between a
// step's many small parallel regions (which PASSIVE pays a futex sleep and wake-up for, 0-7 %
// slower on an idle machine), short enough that a worker soon yields its core to a competing
// process (with 300000, peft kept a third of PASSIVE's rate under load). The value's own
// measurement is pending: docs/performance.md, "Robust under load", bench/under_load.py.
constexpr const char* kSpinCount = "10000";
constexpr const char* kMarker = "PEFT_OPENMP_WAIT_REEXEC";

bool g_set_by_peft = false;

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

}  // namespace

void choose_openmp_wait(char** argv) {
  if (std::getenv(kMarker) != nullptr) {  // the re-executed process: libgomp has read its setting
    // Only our own pair counts: a GOMP_SPINCOUNT of the user's beside a stray marker stays.
    g_set_by_peft = env_is(kMarker, kSpinCount) && env_is("GOMP_SPINCOUNT", kSpinCount);
    unsetenv(kMarker);
    if (g_set_by_peft) unsetenv("GOMP_SPINCOUNT");
    // The kernel named this process after the path it executed, "exe"; give it back the name
    // the first exec gave it (the basename of what was started, as argv[0] says in every usual
    // case), which ps, top, pgrep -x peft and killall look for.
    if (argv[0] != nullptr && *argv[0] != '\0') {
      const char* slash = std::strrchr(argv[0], '/');
      prctl(PR_SET_NAME, slash != nullptr ? slash + 1 : argv[0]);
    }
    return;
  }
  if (env_set("OMP_WAIT_POLICY") || env_set("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", kSpinCount, 1) == 0 && setenv(kMarker, kSpinCount, 1) == 0)
    execve("/proc/self/exe", argv, environ);  // returns only on failure
  unsetenv("GOMP_SPINCOUNT");
  unsetenv(kMarker);
}

std::string openmp_wait_setting() {
  if (g_set_by_peft)
    return std::string("GOMP_SPINCOUNT=") + kSpinCount +
           " (peft's default; OMP_WAIT_POLICY or GOMP_SPINCOUNT override it)";
  std::string s;
  for (const char* name : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"})
    if (env_set(name)) s += std::string(s.empty() ? "" : " ") + name + "=" + std::getenv(name);
  return s.empty() ? "libgomp's default (GOMP_SPINCOUNT=300000: peft did not re-execute itself)"
                   : s + " (environment)";
}

}  // namespace peft
