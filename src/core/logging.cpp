#include "llmc/core/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "llmc/core/error.h"

namespace llmc {

namespace {
std::shared_ptr<spdlog::logger> logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_mt("llmc");
    l->set_pattern("[%H:%M:%S] [%^%l%$] %v");
    return l;
  }();
  return instance;
}
}  // namespace

void setup_logging(const std::string& level, bool quiet) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    throw UsageError("--log_level: expected trace, debug, info, warn, error or off, found '" + level + "'");
  }
  if (quiet && lvl < spdlog::level::err) lvl = spdlog::level::err;
  logger()->set_level(lvl);
}

void log_info(const std::string& message) { logger()->info(message); }
void log_warn(const std::string& message) { logger()->warn(message); }
void log_debug(const std::string& message) { logger()->debug(message); }
bool info_enabled() { return logger()->should_log(spdlog::level::info); }

}  // namespace llmc
