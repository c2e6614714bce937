#include "checkpoint.h"

#include <filesystem>
#include <regex>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/io/atomic_dir.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_file.h"
#include "llmc/io/safetensors.h"

namespace llmc::distill {

namespace fs = std::filesystem;

namespace {

const char* kTrainerState = "trainer_state.json";
const char* kOptimizer = "optimizer.safetensors";
const char* kFinalStaging = ".final.tmp";

bool complete(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / kTrainerState, ec) && fs::is_regular_file(dir / kOptimizer, ec) &&
         fs::is_regular_file(dir / "model.safetensors", ec) && fs::is_regular_file(dir / "config.json", ec);
}

}  // namespace

std::string save_checkpoint(const std::string& output_dir, int64_t step, const Checkpoint& ckpt, int64_t keep) {
  const std::string path = (fs::path(output_dir) / ("checkpoint-" + std::to_string(step))).string();
  {
    io::AtomicOutputDir out(path, /*overwrite=*/true);
    const fs::path s(out.staging());
    io::save_safetensors((s / "model.safetensors").string(), ckpt.model);
    io::save_safetensors((s / kOptimizer).string(), ckpt.optimizer);
    io::write_file_atomic((s / "config.json").string(), ckpt.config.dump(2) + "\n");
    io::copy_model_side_files(ckpt.tokenizer_dir, out.staging());
    // Written last: a checkpoint without it is incomplete and never resumed from.
    io::write_file_atomic((s / kTrainerState).string(), ckpt.state.dump(2) + "\n");
    out.commit();
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

void remove_stale_staging(const std::string& output_dir) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(output_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(".checkpoint-", 0) == 0 || name == kFinalStaging) {
      std::error_code rm;
      fs::remove_all(it->path(), rm);
    }
  }
}

void write_model_files(const std::string& output_dir, const io::StateDict& weights, const nlohmann::json& config,
                       const std::string& tokenizer_dir, uint64_t max_shard_bytes) {
  const fs::path stage = fs::path(output_dir) / kFinalStaging;
  std::error_code ec;
  fs::remove_all(stage, ec);
  fs::create_directories(stage, ec);
  if (ec) throw ResourceError("cannot create " + stage.string() + ": " + ec.message());
  io::save_safetensors_sharded(stage.string(), weights, max_shard_bytes);
  io::write_file_atomic((stage / "config.json").string(), config.dump(2) + "\n");
  io::copy_model_side_files(tokenizer_dir, stage.string());
  // Weight files of an earlier final write (another sharding) would mix with the new ones.
  for (auto it = fs::directory_iterator(output_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_regular_file() && name.rfind("model", 0) == 0 && name.find(".safetensors") != std::string::npos) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
  std::vector<fs::path> files;
  for (auto it = fs::directory_iterator(stage, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    files.push_back(it->path());
  }
  for (const auto& f : files) {
    std::error_code mv;
    fs::rename(f, fs::path(output_dir) / f.filename(), mv);
    if (mv) throw ResourceError("cannot move " + f.string() + " into " + output_dir + ": " + mv.message());
  }
  fs::remove_all(stage, ec);
}

}  // namespace llmc::distill
