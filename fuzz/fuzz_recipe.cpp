// pipeline recipes: parsing (every stage's options through its tool's option table) and sweep
// expansion with its limits.
#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "llmc/io/json_file.h"
#include "llmc/pipeline/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  llmc::fuzz::expect_only_llmc_errors([&] {
    const nlohmann::json j = llmc::io::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "recipe.json");
    const auto recipe = llmc::pipeline::parse_recipe(j, "recipe.json");
    (void)llmc::pipeline::expand_sweep(recipe);
  });
  return 0;
}
