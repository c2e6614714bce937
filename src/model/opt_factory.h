// Private: model factories the model registry knows.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "llmc/model/causal_lm.h"

namespace llmc::model {

std::unique_ptr<CausalLM> make_opt_causal_lm(const nlohmann::json& config, io::StateDict weights,
                                             const std::string& source, const RunContext& ctx);
io::StateDict init_opt_weights(const nlohmann::json& config, uint64_t seed);

}  // namespace llmc::model
