// The OpenMP wait policy of the `peft` program: a short spin before an idle worker sleeps.
//
// GNU libgomp (our OpenMP, and the one Debian's oneDNN runs on) lets an idle worker spin for
// GOMP_SPINCOUNT iterations (300000 by default, milliseconds) before it sleeps, and reads that
// setting once, in its constructor, before main. On a machine where another process wants the
// cores, workers spinning at every barrier take the time slices the working threads need: peft
// train's rate on 2 cores fell several-fold with one competing busy process (docs/performance.md,
// "Robust under load"). So when the user has set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT, main()
// re-executes the program once (/proc/self/exe, the same argv and environment plus
// GOMP_SPINCOUNT=kSpinCount and a marker) before it does anything else; the new process sees the
// marker, removes both variables again (libgomp has read them; programs peft starts inherit the
// user's environment) and runs. Setting the variable in-process is too late for libgomp, and
// even a .preinit_array function is: glibc resets the environment before libgomp's constructor.
// If the re-execution fails, peft runs on with libgomp's default. The shared library (libpeft.so)
// cannot do this for an application: docs/performance.md gives the advice instead.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "cli/setup.h"

extern char** environ;

namespace peft::cli {
namespace {

// Chosen by measuring (docs/performance.md, "Robust under load"): under load it keeps about the
// rate of OMP_WAIT_POLICY=PASSIVE, on an idle machine it spins through the short waits between
// a step's many small parallel regions that PASSIVE pays a futex wake-up for.
constexpr const char* kSpinCount = "10000";
constexpr const char* kMarker = "PEFT_OPENMP_WAIT_REEXEC";

bool g_set_by_peft = false;

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

}  // namespace

void choose_openmp_wait(char** argv) {
  if (env_set(kMarker)) {  // the re-executed process: libgomp has read GOMP_SPINCOUNT
    g_set_by_peft = std::string(std::getenv(kMarker)) == kSpinCount;
    unsetenv(kMarker);
    if (g_set_by_peft) unsetenv("GOMP_SPINCOUNT");
    return;
  }
  if (env_set("OMP_WAIT_POLICY") || env_set("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", kSpinCount, 1) != 0 || setenv(kMarker, kSpinCount, 1) != 0) return;
  execve("/proc/self/exe", argv, environ);
  // Not re-executed (no /proc?): run on with libgomp's default, and leave the environment as it
  // was for the programs peft starts.
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
  return s.empty() ? "libgomp's default (GOMP_SPINCOUNT=300000)" : s + " (environment)";
}

}  // namespace peft::cli
