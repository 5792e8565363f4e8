// The SIMD levels a kernel test runs at: every level this CPU supports, with the level in use
// restored when the test ends (test_convert.cpp, test_gemv.cpp).
#pragma once

#include <vector>

#include "kernels/cpu_features.h"

namespace peft::testing {

class SimdLevelGuard {
 public:
  SimdLevelGuard() : level_(simd_level()) {}
  ~SimdLevelGuard() { set_simd_level(level_); }

 private:
  SimdLevel level_;
};

inline std::vector<SimdLevel> supported_levels() {
  std::vector<SimdLevel> levels;
  for (SimdLevel l : {SimdLevel::Generic, SimdLevel::Avx2, SimdLevel::Avx512})
    if (int(l) <= int(simd_level_supported())) levels.push_back(l);
  return levels;
}

}  // namespace peft::testing
