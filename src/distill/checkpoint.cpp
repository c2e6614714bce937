#include "checkpoint.h"

#include <filesystem>
#include <regex>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_file.h"
#include "llmc/io/model_dir_writer.h"
#include "llmc/io/safetensors.h"

namespace llmc::distill {

namespace fs = std::filesystem;

namespace {

const char* kTrainerState = "trainer_state.json";
const char* kOptimizer = "optimizer.safetensors";

bool complete(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / kTrainerState, ec) && fs::is_regular_file(dir / kOptimizer, ec) &&
         fs::is_regular_file(dir / "model.safetensors", ec) && fs::is_regular_file(dir / "config.json", ec);
}

}  // namespace

std::string save_checkpoint(const std::string& output_dir, int64_t step, const Checkpoint& ckpt, int64_t keep) {
  const std::string path = (fs::path(output_dir) / ("checkpoint-" + std::to_string(step))).string();
  {
    io::ModelDirWriter out(path, io::ModelDirWriter::Place::kNewDirectory, /*overwrite=*/true);
    // Both are in memory and never sharded: written directly, not through a spill file.
    out.write_safetensors("model.safetensors", ckpt.model);
    out.write_safetensors(kOptimizer, ckpt.optimizer);
    out.write_json("config.json", ckpt.config);
    out.copy_side_files(ckpt.tokenizer_dir);
    // Written last: a checkpoint without it is incomplete and never resumed from.
    out.commit(kTrainerState, ckpt.state);
  }
  if (keep > 0) {
    auto all = list_checkpoints(output_dir);
    for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
      std::error_code ec;
      fs::remove_all(all[i].second, ec);
    }
  }
  return path;
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& output_dir) {
  static const std::regex kName("checkpoint-([0-9]{1,12})");
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(output_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::smatch m;
    const std::string name = it->path().filename().string();
    if (it->is_directory(ec) && std::regex_match(name, m, kName) && complete(it->path())) {
      out.emplace_back(std::stoll(m[1].str()), it->path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> resolve_checkpoint(const std::string& spec, const std::string& output_dir) {
  if (spec == "latest") {
    const auto all = list_checkpoints(output_dir);
    if (all.empty()) return std::nullopt;
    return all.back().second;
  }
  if (!complete(spec)) {
    throw InputError(spec + ": not a complete checkpoint (expected model.safetensors, config.json, " + kOptimizer +
                     " and " + kTrainerState + ")");
  }
  return spec;
}

nlohmann::json read_trainer_state(const std::string& dir) {
  const nlohmann::json j = io::read_json_file((fs::path(dir) / kTrainerState).string());
  if (!j.is_object() || !j.contains("global_step") || !j["global_step"].is_number_integer()) {
    throw InputError(dir + "/" + kTrainerState + ": expected an object with an integer 'global_step'");
  }
  return j;
}

io::StateDict read_optimizer_state(const std::string& dir) {
  return io::SafetensorsFile::open((fs::path(dir) / kOptimizer).string()).load_all();
}

}  // namespace llmc::distill
