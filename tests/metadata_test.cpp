// metadata.json describes the project as its registries do: the executables the build makes,
// the model types, tokenizers, weight files and methods each tool accepts. The expected
// document is generated here from the library; a difference fails with the document to write
// (LLMC_WRITE_METADATA=1 writes it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "llmc/distill/losses.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_file.h"
#include "llmc/model/causal_lm.h"
#include "llmc/prune/prune.h"
#include "llmc/quant/quantize.h"
#include "llmc/tokenizer/tokenizer.h"

using namespace llmc;

namespace {

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

nlohmann::ordered_json expected_metadata(const nlohmann::json& current) {
  nlohmann::ordered_json quantize = nlohmann::ordered_json::object();
  for (const auto& m : quant::method_names()) quantize[m] = {{"writes", quant::method_format(m)}};
  nlohmann::ordered_json j;
  j["name"] = "llmc";
  j["version"] = current.at("version");  // the build reads the version from here
  j["description"] = current.at("description");
  j["executables"] = split(LLMC_EXECUTABLES);
  j["supported_model_types"] = model::model_types();
  j["supported_tokenizers"] = {{"kinds", tokenizer::tokenizer_kinds()}, {"tokenizer_classes", tokenizer::tokenizer_classes()}};
  j["supported_weight_files"] = io::weight_file_names();
  j["methods"] = {{"quantize", {{"quantization_method", quantize}}},
                  {"prune",
                   {{"pruning_method", prune::method_names()},
                    {"pruning_type", prune::pruning_types()},
                    {"structure", prune::structures()}}},
                  {"distill", {{"distillation_loss", distill::loss_names()}}}};
  return j;
}

}  // namespace

TEST(Metadata, MatchesTheRegistries) {
  const char* src = std::getenv("LLMC_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "run through ctest";
  const std::string path = std::string(src) + "/metadata.json";
  const nlohmann::json current = io::read_json_file(path);
  const nlohmann::ordered_json expected = expected_metadata(current);
  if (std::getenv("LLMC_WRITE_METADATA") != nullptr) {
    std::ofstream(path) << expected.dump(2) << "\n";
    return;
  }
  EXPECT_EQ(current, nlohmann::json(expected)) << "metadata.json is out of date; it should read:\n"
                                                << expected.dump(2) << "\n(LLMC_WRITE_METADATA=1 ctest -R metadata_test writes it)";
}

TEST(Metadata, EveryListedExecutableIsBuilt) {
  const auto tools = split(LLMC_EXECUTABLES);
  EXPECT_EQ(tools.size(), 5u);
  for (const auto& tool : tools) EXPECT_TRUE(std::filesystem::is_regular_file(std::string(LLMC_APPS_DIR) + "/" + tool)) << tool;
}
