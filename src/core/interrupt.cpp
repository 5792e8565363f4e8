#include "core/interrupt.h"

#include <csignal>

namespace peft {
namespace {

volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_interrupt(int sig) {
  g_signal = sig;
  // A second Ctrl-C ends the process at once.
  std::signal(sig, SIG_DFL);
}

}  // namespace

void install_interrupt_handler() {
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
}

bool interrupt_requested() {
  return g_signal != 0;
}

int interrupt_signal() {
  return int(g_signal);
}

}  // namespace peft
