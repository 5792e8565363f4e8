// Ctrl-C during a long run: the first SIGINT (or SIGTERM) only sets a flag that the trainer polls
// between steps, so it can write a checkpoint and stop cleanly; a second one ends the process at
// once (the default action). Library users who never install the handler are unaffected.
#pragma once

#include <string>

#include "core/error.h"

namespace peft {

// Installs the SIGINT / SIGTERM handler (idempotent).
void install_interrupt_handler();
// True once SIGINT or SIGTERM arrived after install_interrupt_handler().
bool interrupt_requested();
// The signal that set the flag (0: none).
int interrupt_signal();

// Thrown by a run that stopped cleanly because of an interrupt; `what()` says what was saved.
class Interrupted : public Error {
 public:
  using Error::Error;
};

}  // namespace peft
