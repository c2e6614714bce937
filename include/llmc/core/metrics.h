// The frame every metrics.json shares (tool, llmc_version, status, the tool's figures,
// elapsed_s, options), built in one place for the executables, the pipeline's stages and the
// pipeline's own metrics.json.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace llmc {

// {"tool", "llmc_version", "status", <figures...>, "elapsed_s" (when >= 0), "options" (when
// not null)}. Keys of `figures` win over the frame's except tool and llmc_version.
nlohmann::json wrap_metrics(const std::string& tool, const nlohmann::json& figures, const nlohmann::json& options,
                            double elapsed_s, const std::string& status = "ok");

}  // namespace llmc
