// config.json and a bitsandbytes quant_state: the JSON parser with its limits, OptConfig's
// typed fields, and the model registry's checks.
#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "llmc/io/json_fields.h"
#include "llmc/io/json_file.h"
#include "llmc/model/opt_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  llmc::fuzz::expect_only_llmc_errors([&] {
    const nlohmann::json j = llmc::io::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
    const auto c = llmc::model::OptConfig::from_json(j, "config.json");
    (void)c;
    if (j.is_object() && j.contains("quantization_config")) {
      const auto qc = llmc::io::json_field<nlohmann::json>(j, "quantization_config", {}, "config.json");
      (void)llmc::io::json_field<int64_t>(qc, "bits", 4, "config.json", "quantization_config");
    }
  });
  return 0;
}
