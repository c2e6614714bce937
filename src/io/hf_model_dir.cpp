#include "llmc/io/hf_model_dir.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include <unistd.h>

#include "llmc/core/error.h"
#include "llmc/io/hub_download.h"
#include "env.h"
#include "llmc/io/json_file.h"
#include "llmc/io/safetensors.h"
#include "llmc/io/torch_checkpoint.h"

namespace llmc::io {

namespace fs = std::filesystem;

namespace {

bool is_commit_hash(const std::string& s) {
  return s.size() == 40 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// Shard file names come from an index file: refuse anything that would leave the directory.
std::string checked_shard_name(const std::string& index_path, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos || name == "." ||
      name == "..") {
    throw InputError(index_path + ": shard file name '" + name + "' is not a plain file name");
  }
  return name;
}

std::vector<std::string> shards_from_index(const std::string& dir, const std::string& index_name) {
  const std::string index_path = (fs::path(dir) / index_name).string();
  const nlohmann::json index = read_json_file(index_path);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw InputError(index_path + ": expected an object with a 'weight_map' object");
  }
  std::set<std::string> files;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string()) throw InputError(index_path + ": weight_map entry '" + it.key() + "' is not a string");
    files.insert(checked_shard_name(index_path, it.value().get<std::string>()));
  }
  if (files.empty()) throw InputError(index_path + ": weight_map is empty");
  std::vector<std::string> out;
  for (const auto& f : files) out.push_back((fs::path(dir) / f).string());
  return out;
}

}  // namespace

std::string hf_home_dir() {
  if (auto home = env_string("HF_HOME"); !home.empty()) return home;
  std::string xdg = env_string("XDG_CACHE_HOME");
  if (xdg.empty()) xdg = (fs::path(env_string("HOME").empty() ? "/root" : env_string("HOME")) / ".cache").string();
  return (fs::path(xdg) / "huggingface").string();
}

std::string hf_hub_cache_dir() {
  if (auto v = env_string("HF_HUB_CACHE"); !v.empty()) return v;
  if (auto v = env_string("HUGGINGFACE_HUB_CACHE"); !v.empty()) return v;
  return (fs::path(hf_home_dir()) / "hub").string();
}

std::string resolve_model_dir(const std::string& model_arg, const std::string& revision) {
  std::error_code ec;
  if (fs::is_directory(model_arg, ec)) return model_arg;
  std::vector<std::string> looked = {model_arg + " (as a directory)"};
  const bool looks_like_id = !model_arg.empty() && model_arg.find("..") == std::string::npos &&
                             model_arg.front() != '/' && model_arg.front() != '.' &&
                             std::count(model_arg.begin(), model_arg.end(), '/') <= 1;
  if (looks_like_id && !revision.empty() && revision.find("..") == std::string::npos) {
    // "org/name" -> "models--org--name"
    std::string folder = "models--";
    for (char c : model_arg) folder += (c == '/') ? std::string("--") : std::string(1, c);
    const fs::path repo = fs::path(hf_hub_cache_dir()) / folder;
    std::string commit;
    const fs::path ref = repo / "refs" / revision;
    if (fs::is_regular_file(ref, ec)) {
      commit = read_text_file(ref.string());
      while (!commit.empty() && (commit.back() == '\n' || commit.back() == ' ' || commit.back() == '\r')) commit.pop_back();
      looked.push_back(ref.string() + " -> " + commit);
    } else {
      looked.push_back(ref.string());
      if (is_commit_hash(revision)) commit = revision;
    }
    if (!commit.empty()) {
      const fs::path snap = repo / "snapshots" / commit;
      if (fs::is_directory(snap, ec)) return snap.string();
      looked.push_back(snap.string());
    }
  }
  if (looks_like_id && !hub_offline()) return download_model(model_arg, revision, true);
  std::string msg = "model '" + model_arg + "' not found (revision " + revision + "); looked in:";
  for (const auto& l : looked) msg += "\n  " + l;
  if (looks_like_id) msg += "\n(HF_HUB_OFFLINE is set: not downloading)";
  throw InputError(msg);
}

const std::vector<std::string>& weight_file_names() {
  static const std::vector<std::string> kNames = {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                                                  "pytorch_model.bin.index.json"};
  return kNames;
}

std::vector<std::string> weight_files(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  for (const auto& name : weight_file_names()) {
    if (!fs::exists(d / name, ec)) continue;
    ::close(open_regular_file((d / name).string()));  // a FIFO, socket or device is refused here
    const bool index = name.size() > 11 && name.compare(name.size() - 11, 11, ".index.json") == 0;
    return index ? shards_from_index(dir, name) : std::vector<std::string>{(d / name).string()};
  }
  throw InputError(dir + ": no weights found (expected model.safetensors, model.safetensors.index.json, "
                   "pytorch_model.bin or pytorch_model.bin.index.json)");
}

StateDict load_weights(const std::string& dir) {
  StateDict out;
  for (const auto& file : weight_files(dir)) {
    const bool st = file.size() >= 12 && file.compare(file.size() - 12, 12, ".safetensors") == 0;
    StateDict part = st ? SafetensorsFile::open(file).load_all() : load_torch_checkpoint(file);
    for (auto& [k, v] : part) {
      if (out.count(k)) throw InputError(file + ": tensor '" + k + "' also appears in another shard");
      out[k] = v;
    }
  }
  return out;
}

void copy_model_side_files(const std::string& from_dir, const std::string& to_dir) {
  static const char* kFiles[] = {"tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                                 "tokenizer.json",        "tokenizer.model",         "added_tokens.json",
                                 "generation_config.json"};
  for (const char* f : kFiles) {
    std::error_code ec;
    if (!fs::exists(fs::path(from_dir) / f, ec)) continue;
    fs::copy_file(fs::path(from_dir) / f, fs::path(to_dir) / f, fs::copy_options::overwrite_existing, ec);
    if (ec) throw ResourceError(std::string("cannot copy ") + f + " into " + to_dir + ": " + ec.message());
  }
}

uint64_t directory_size_bytes(const std::string& dir, const std::vector<std::string>& exclude) {
  // The files of the directory itself (following links, as in hub-cache snapshots); not
  // subdirectories such as distill's checkpoint-N/.
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string name = it->path().filename().string();
    if (std::find(exclude.begin(), exclude.end(), name) != exclude.end()) continue;
    total += fs::file_size(it->path(), ec);
  }
  return total;
}

}  // namespace llmc::io
