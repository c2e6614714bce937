#include "llmc/io/model_dir_writer.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/io/atomic_dir.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_file.h"
#include "llmc/io/safetensors.h"

namespace llmc::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIntoStaging = ".final.tmp";

bool is_weight_file(const std::string& name) {
  return name.rfind("model", 0) == 0 && name.find(".safetensors") != std::string::npos;
}

}  // namespace

ModelDirWriter::ModelDirWriter(std::string final_dir, Place place, bool overwrite)
    : final_(std::move(final_dir)), place_(place) {
  if (place_ == Place::kNewDirectory) {
    dir_ = std::make_unique<AtomicOutputDir>(final_, overwrite);
    staging_ = dir_->staging();
    final_ = dir_->final_dir();
    return;
  }
  staging_ = (fs::path(final_) / kIntoStaging).string();
  std::error_code ec;
  fs::remove_all(staging_, ec);
  fs::create_directories(staging_, ec);
  if (ec) throw ResourceError("cannot create " + staging_ + ": " + ec.message());
}

ModelDirWriter::~ModelDirWriter() {
  weights_.reset();  // removes its spill file
  if (place_ == Place::kIntoDirectory && !committed_) {
    std::error_code ec;
    fs::remove_all(staging_, ec);
  }
}

void ModelDirWriter::add_tensor(const std::string& name, const at::Tensor& tensor) {
  if (!weights_) weights_ = std::make_unique<SafetensorsStreamWriter>((fs::path(staging_) / ".spill.tmp").string());
  weights_->add(name, tensor);
}

std::vector<std::string> ModelDirWriter::finish_weights(uint64_t max_shard_bytes) {
  if (!weights_) throw Error("ModelDirWriter::finish_weights without weights");
  auto names = weights_->finish(staging_, max_shard_bytes);
  weights_.reset();
  return names;
}

void ModelDirWriter::write_json(const std::string& file, const nlohmann::json& content) {
  write_file_atomic((fs::path(staging_) / file).string(), content.dump(2) + "\n");
}

void ModelDirWriter::write_safetensors(const std::string& file, const StateDict& tensors) {
  save_safetensors((fs::path(staging_) / file).string(), tensors);
}

void ModelDirWriter::copy_side_files(const std::string& from_dir) { copy_model_side_files(from_dir, staging_); }

uint64_t ModelDirWriter::staged_bytes() const { return directory_size_bytes(staging_); }

void ModelDirWriter::commit(const std::string& marker, const nlohmann::json& content) {
  if (weights_) throw Error("ModelDirWriter::commit before finish_weights");
  if (place_ == Place::kNewDirectory) {
    write_json(marker, content);
    dir_->commit();
    committed_ = true;
    return;
  }
  std::error_code ec;
  for (auto it = fs::directory_iterator(final_, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code rm;
    if ((is_weight_file(name) || name == marker) && it->is_regular_file(rm)) fs::remove(it->path(), rm);
  }
  std::vector<fs::path> files;
  for (auto it = fs::directory_iterator(staging_, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    files.push_back(it->path());
  }
  for (const auto& f : files) {
    std::error_code mv;
    fs::rename(f, fs::path(final_) / f.filename(), mv);
    if (mv) throw ResourceError("cannot move " + f.string() + " into " + final_ + ": " + mv.message());
  }
  write_file_atomic((fs::path(final_) / marker).string(), content.dump(2) + "\n");
  fs::remove_all(staging_, ec);
  committed_ = true;
}

void ModelDirWriter::remove_abandoned(const std::string& dir) {
  remove_abandoned_staging(dir);
  std::error_code ec;
  fs::remove_all(fs::path(dir) / kIntoStaging, ec);
}

}  // namespace llmc::io
