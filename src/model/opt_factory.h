// Private: model factories the model registry knows.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "llmc/model/causal_lm.h"

namespace llmc::model {

std::unique_ptr<CausalLM> make_opt_causal_lm(const std::string& dir, const nlohmann::json& config,
                                             const RunContext& ctx);

}  // namespace llmc::model
