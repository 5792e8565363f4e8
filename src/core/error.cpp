#include "core/error.h"

namespace peft {

void check_failed(const char* file, int line, const char* condition, const std::string& message) {
  throw InternalError(
      fmt::format("internal check failed at {}:{}: ({}) {}", file, line, condition, message));
}

}  // namespace peft
