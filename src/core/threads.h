// Thread control. One pool (OpenMP) serves our loops and the GEMM libraries: two pools spinning
// against each other made PyTorch 2–17× slower on 2 threads here (shared/bench/README.md).
#pragma once

namespace peft {

// n <= 0 means OMP_NUM_THREADS when it is set, else all cores. Applies to OpenMP, oneDNN (which runs on OpenMP) and OpenBLAS.
void set_num_threads(int n);
int num_threads();
int num_cores();

}  // namespace peft
