#include "core/threads.h"

#include <omp.h>

#include <unistd.h>
#include <cstdlib>

extern "C" void openblas_set_num_threads(int num_threads);

namespace peft {

int num_cores() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? int(n) : 1;
}

int default_num_threads() {
  // OMP_NUM_THREADS is how a user or a test runner running several processes at once asks each
  // for fewer threads; omp_set_num_threads below would otherwise override it.
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env && *env) {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (*end == '\0' && v > 0 && v <= 4096) return int(v);
  }
  return num_cores();
}

void set_num_threads(int n) {
  if (n <= 0) n = default_num_threads();
  omp_set_num_threads(n);
  // OpenBLAS (Debian's pthread build) has its own pool; two pools spinning against each other
  // made 2 threads far slower than 1. It is held at one thread and kernels/gemm_openblas.cpp
  // splits large products over the OpenMP threads instead.
  openblas_set_num_threads(1);
}

int num_threads() {
  return omp_get_max_threads();
}

}  // namespace peft
