// The process-wide warning handler (log.hpp).
#include "assistgen/log.hpp"

#include <cstdio>
#include <mutex>
#include <string>
#include <utility>

namespace assistgen {

namespace {

std::mutex& handler_mutex() {
  static std::mutex m;
  return m;
}

WarningHandler& handler() {
  static WarningHandler h;
  return h;
}

}  // namespace

WarningHandler set_warning_handler(WarningHandler h) {
  const std::lock_guard lock(handler_mutex());
  return std::exchange(handler(), std::move(h));
}

void warn(std::string_view message) {
  const std::lock_guard lock(handler_mutex());
  if (const WarningHandler& h = handler()) {
    h(message);
  } else {
    const std::string line = "assistgen: warning: " + std::string(message) + "\n";
    std::fputs(line.c_str(), stderr);
  }
}

}  // namespace assistgen
