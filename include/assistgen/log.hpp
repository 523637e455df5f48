// Warnings: things that are not errors but change what a user gets (a
// generation_config.json field assistgen does not implement, a RoPE model run
// past the positions it was trained for). The library never prints by
// itself: each warning goes to one process-wide handler, which by default
// writes "assistgen: warning: MESSAGE" to stderr. A program replaces it with
// set_warning_handler (to log, count, or silence warnings).
#pragma once

#include <functional>
#include <string_view>

namespace assistgen {

/// Receives each warning's message (one line, no trailing newline).
using WarningHandler = std::function<void(std::string_view message)>;

/// Installs `handler` (an empty one restores the stderr default) and returns
/// the previous one. Thread-safe; warn() calls after it returns use the new
/// handler.
WarningHandler set_warning_handler(WarningHandler handler);

/// Sends `message` to the current handler. Thread-safe (calls are serialised).
void warn(std::string_view message);

}  // namespace assistgen
