#include "llmc/core/metrics.h"

#include <nlohmann/json.hpp>

#include "llmc/core/version.h"

namespace llmc {

nlohmann::json wrap_metrics(const std::string& tool, const nlohmann::json& figures, const nlohmann::json& options,
                            double elapsed_s, const std::string& status) {
  nlohmann::json m = {{"tool", tool}, {"llmc_version", version()}, {"status", status}};
  for (auto it = figures.begin(); it != figures.end(); ++it) {
    if (it.key() != "tool" && it.key() != "llmc_version") m[it.key()] = it.value();
  }
  if (elapsed_s >= 0) m["elapsed_s"] = elapsed_s;
  if (!options.is_null()) m["options"] = options;
  return m;
}

}  // namespace llmc
