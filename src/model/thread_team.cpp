#include "thread_team.h"

#include <chrono>
#include <memory>

#if defined(__x86_64__)
#include <immintrin.h>
#define LLMC_PAUSE() _mm_pause()
#else
#define LLMC_PAUSE() ((void)0)
#endif

namespace llmc::model {

namespace {
// How long a member spins for the next job before it sleeps: longer than the gap between the
// jobs of one token and between tokens (sampling, bookkeeping), short enough to cost nothing
// noticeable when decoding stops.
constexpr auto kSpin = std::chrono::microseconds(2000);
}  // namespace

std::shared_ptr<ThreadTeam> ThreadTeam::get(int size) {
  static std::shared_ptr<ThreadTeam> team;
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  if (size < 1) size = 1;
  if (!team || team->size() != size) team = std::shared_ptr<ThreadTeam>(new ThreadTeam(size));
  return team;
}

ThreadTeam::ThreadTeam(int size) : size_(size) {
  for (int m = 1; m < size_; ++m) threads_.emplace_back([this, m] { work(m); });
}

ThreadTeam::~ThreadTeam() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadTeam::dispatch(Thunk thunk, const void* fn) {
  thunk_ = thunk;
  fn_ = fn;
  remaining_.store(size_ - 1, std::memory_order_relaxed);
  park_.store(false, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    wake_.notify_all();
  }
  thunk(fn, 0, size_);
  while (remaining_.load(std::memory_order_acquire) > 0) LLMC_PAUSE();
}

void ThreadTeam::work(int member) {
  uint64_t seen = 0;  // the generation at construction: a job dispatched before this thread ran is not missed
  while (true) {
    auto start = std::chrono::steady_clock::now();
    uint64_t g;
    int spins = 0;
    while ((g = generation_.load(std::memory_order_acquire)) == seen) {
      LLMC_PAUSE();
      if (++spins % 64 == 0 && (park_.load(std::memory_order_relaxed) || std::chrono::steady_clock::now() - start > kSpin)) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
        sleepers_.fetch_sub(1);
        start = std::chrono::steady_clock::now();
      }
    }
    seen = g;
    if (stop_.load()) return;
    thunk_(fn_, member, size_);
    remaining_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace llmc::model
