#include "llmc/io/atomic_dir.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <regex>

#include <filesystem>

#include "llmc/core/error.h"

namespace llmc::io {

namespace fs = std::filesystem;

AtomicOutputDir::AtomicOutputDir(std::string final_dir, bool overwrite)
    : final_(std::move(final_dir)), overwrite_(overwrite) {
  while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
  std::error_code ec;
  if (fs::exists(final_, ec) && !overwrite_) {
    throw UsageError("output directory '" + final_ + "' already exists (pass --overwrite to replace it)");
  }
  const fs::path target(final_);
  fs::path parent = target.parent_path();
  if (parent.empty()) parent = ".";
  fs::create_directories(parent, ec);
  if (ec) throw ResourceError("cannot create '" + parent.string() + "': " + ec.message());
  remove_abandoned_staging(parent.string(), target.filename().string());
  staging_ = (parent / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
  fs::remove_all(staging_, ec);
  fs::create_directory(staging_, ec);
  if (ec) throw ResourceError("cannot create '" + staging_ + "': " + ec.message());
}

AtomicOutputDir::~AtomicOutputDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(staging_, ec);
  }
}

void AtomicOutputDir::commit() {
  std::error_code ec;
  if (fs::exists(final_, ec)) {
    if (!overwrite_) throw UsageError("output directory '" + final_ + "' appeared while working");
    const std::string old = staging_ + ".old";
    fs::rename(final_, old, ec);
    if (ec) throw ResourceError("cannot replace '" + final_ + "': " + ec.message());
    fs::rename(staging_, final_, ec);
    if (ec) throw ResourceError("cannot move output into '" + final_ + "': " + ec.message());
    fs::remove_all(old, ec);
  } else {
    fs::rename(staging_, final_, ec);
    if (ec) throw ResourceError("cannot move output into '" + final_ + "': " + ec.message());
  }
  committed_ = true;
}

void remove_abandoned_staging(const std::string& parent, const std::string& name) {
  static const std::regex kStaging(R"(\.(.+)\.tmp\.([0-9]{1,9})(\.old)?)");
  std::error_code ec;
  std::vector<fs::path> stale;
  for (auto it = fs::directory_iterator(parent, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::smatch m;
    const std::string entry = it->path().filename().string();
    if (!std::regex_match(entry, m, kStaging) || (!name.empty() && m[1].str() != name)) continue;
    std::error_code type;
    if (!it->is_directory(type) || it->is_symlink(type)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(m[2].str()));
    const bool running = pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM;
    if (!running) stale.push_back(it->path());
  }
  for (const auto& p : stale) {
    std::error_code rm;
    fs::remove_all(p, rm);
  }
}

}  // namespace llmc::io
