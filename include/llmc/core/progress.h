// Progress over long work: a bar with rate and ETA when stderr is a terminal, throttled
// log lines otherwise. Never writes to stdout.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace llmc {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true, std::string unit = "it");
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1);
  void finish();

 private:
  void render(bool final);

  std::string label_;
  std::string unit_;
  int64_t total_;
  int64_t done_{0};
  int64_t rendered_done_{-1};
  bool enabled_;
  bool tty_;
  bool finished_{false};
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_render_;
};

}  // namespace llmc
