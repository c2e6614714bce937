// Logging goes to stderr through spdlog; results go to stdout.
#pragma once

#include <string>

namespace llmc {

// level: trace | debug | info | warn | error | off. quiet forces "error".
// Throws UsageError on an unknown level.
void setup_logging(const std::string& level, bool quiet);

void log_info(const std::string& message);
void log_warn(const std::string& message);
void log_debug(const std::string& message);
// True when info messages are shown (not --quiet): progress of work that has no RunContext.
bool info_enabled();

}  // namespace llmc
