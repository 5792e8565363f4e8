#pragma once

#include <string>

namespace peft {

// peft's default OpenMP spin count (docs/performance.md, "Robust under load"): the peft program's
// main() calls choose_openmp_wait(argv) first; unless the user set OMP_WAIT_POLICY or
// GOMP_SPINCOUNT it re-executes the program once with GOMP_SPINCOUNT set (libgomp reads it before
// main). openmp_wait_setting() describes what is in effect, for `peft info --system`.
void choose_openmp_wait(char** argv);
std::string openmp_wait_setting();

}  // namespace peft
