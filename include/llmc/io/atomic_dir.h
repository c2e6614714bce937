// Output directories that appear only when complete: built in a temporary sibling
// directory and renamed into place by commit(); removed if never committed.
#pragma once

#include <string>

namespace llmc::io {

class AtomicOutputDir {
 public:
  // UsageError if `final_dir` exists and overwrite is false.
  AtomicOutputDir(std::string final_dir, bool overwrite);
  ~AtomicOutputDir();
  AtomicOutputDir(const AtomicOutputDir&) = delete;
  AtomicOutputDir& operator=(const AtomicOutputDir&) = delete;

  const std::string& staging() const { return staging_; }
  const std::string& final_dir() const { return final_; }
  void commit();

 private:
  std::string final_;
  std::string staging_;
  bool overwrite_;
  bool committed_{false};
};

// Removes the staging directories that killed runs left in `parent`: `.<name>.tmp.<pid>`
// (and `.old` twins) whose pid is no longer running; only those of `name` when it is given.
void remove_abandoned_staging(const std::string& parent, const std::string& name = "");

}  // namespace llmc::io
