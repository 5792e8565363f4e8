#include "cli/setup.h"

#include <sys/resource.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace peft::cli {

double peak_rss_mb() {
  // VmHWM belongs to this program's address space; getrusage's ru_maxrss survives exec and would
  // report a large parent (e.g. a Python process that launched us) instead.
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

}  // namespace peft::cli
