#include "core/finite.h"

#include <cstring>

namespace peft {
namespace {

// A float is non-finite when its exponent bits are all ones.
template <typename Bits>
int64_t count_all_ones_exponent(const void* data, int64_t n, Bits mask) {
  const Bits* p = static_cast<const Bits*>(data);
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static)
  for (int64_t i = 0; i < n; ++i) bad += (p[i] & mask) == mask ? 1 : 0;
  return bad;
}

}  // namespace

int64_t count_non_finite(const Tensor& t) {
  if (!t.defined() || t.numel() == 0) return 0;
  switch (t.dtype()) {
    case DType::F32:
      return count_all_ones_exponent<uint32_t>(t.raw(), t.numel(), 0x7f800000u);
    case DType::BF16:
      return count_all_ones_exponent<uint16_t>(t.raw(), t.numel(), uint16_t(0x7f80));
    case DType::F16:
      return count_all_ones_exponent<uint16_t>(t.raw(), t.numel(), uint16_t(0x7c00));
    default:
      return 0;
  }
}

}  // namespace peft
