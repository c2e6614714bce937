#include "llmc/core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace llmc {

namespace {
constexpr double kTtyRefreshS = 0.1;
constexpr double kLogRefreshS = 10.0;

std::string format_seconds(double s) {
  if (s < 0 || s > 1e7) return "?";
  char buf[32];
  int total = static_cast<int>(s + 0.5);
  if (total >= 3600) {
    std::snprintf(buf, sizeof(buf), "%d:%02d:%02d", total / 3600, (total / 60) % 60, total % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%02d:%02d", total / 60, total % 60);
  }
  return buf;
}
}  // namespace

Progress::Progress(std::string label, int64_t total, bool enabled, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_render_(start_) {}

Progress::~Progress() {
  if (!finished_ && enabled_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

void Progress::advance(int64_t n) {
  done_ += n;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_render_).count();
  if (since >= (tty_ ? kTtyRefreshS : kLogRefreshS) || done_ >= total_) {
    last_render_ = now;
    render(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  if (tty_) render(true);
  else if (rendered_done_ != done_) render(true);
}

void Progress::render(bool final) {
  rendered_done_ = done_;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  double eta = rate > 0 && total_ > 0 ? static_cast<double>(total_ - done_) / rate : -1.0;
  if (tty_) {
    constexpr int kWidth = 30;
    int filled = total_ > 0 ? static_cast<int>(kWidth * std::min<int64_t>(done_, total_) / total_) : 0;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %.1f %s/s elapsed %s eta %s\x1b[K", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), rate, unit_.c_str(),
                 format_seconds(elapsed).c_str(), format_seconds(eta).c_str());
    if (final) std::fputc('\n', stderr);
  } else {
    std::fprintf(stderr, "%s: %lld/%lld %.1f %s/s elapsed %s eta %s\n", label_.c_str(), static_cast<long long>(done_),
                 static_cast<long long>(total_), rate, unit_.c_str(), format_seconds(elapsed).c_str(),
                 format_seconds(eta).c_str());
  }
  std::fflush(stderr);
}

}  // namespace llmc
