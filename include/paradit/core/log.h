// Logging to stderr with a level set once (PARADIT_LOG=debug|info|warn|error, or set_log_level).
#pragma once

#include "paradit/core/status.h"

namespace paradit {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_message(LogLevel level, const std::string& msg);

#define PD_LOG(level, ...)                                                                       \
  do {                                                                                           \
    if (::paradit::LogLevel::level >= ::paradit::log_level())                                    \
      ::paradit::log_message(::paradit::LogLevel::level, ::paradit::detail::concat(__VA_ARGS__)); \
  } while (0)

}  // namespace paradit
