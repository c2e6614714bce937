// Private: the decode path's threads. One job at a time, run by every member (the caller is
// member 0) and returned from when all are done. A decoded token issues about five jobs per
// decoder layer, each a few microseconds of work, so the members spin between jobs (no
// futex wake-up per job, which OpenMP's passive wait policy costs) and go to sleep after a
// short idle spell, so an idle team takes no CPU.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace llmc::model {

class ThreadTeam {
 public:
  // The process's team of `size` members (made anew when the size changes; a caller still
  // holding the old one keeps it until it lets go).
  static std::shared_ptr<ThreadTeam> get(int size);
  ~ThreadTeam();
  int size() const { return size_; }
  // The members sleep now instead of spinning for the next job (the end of a decoded token:
  // what runs between tokens may use OpenMP's threads, which need the cores).
  void park() { park_.store(true, std::memory_order_relaxed); }

  // Calls fn(member, size()) on every member; fn must not throw. Callers on several threads
  // take turns (one job at a time).
  template <class Fn>
  void run(const Fn& fn) {
    if (size_ == 1) {
      fn(0, 1);
      return;
    }
    std::lock_guard<std::mutex> turn(run_mutex_);
    dispatch([](const void* f, int member, int n) { (*static_cast<const Fn*>(f))(member, n); }, &fn);
  }

 private:
  using Thunk = void (*)(const void*, int, int);
  explicit ThreadTeam(int size);
  void dispatch(Thunk thunk, const void* fn);
  void work(int member);

  int size_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> remaining_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> park_{false};
  Thunk thunk_{nullptr};
  const void* fn_{nullptr};
  std::mutex mutex_;
  std::mutex run_mutex_;
  std::condition_variable wake_;
};

}  // namespace llmc::model
