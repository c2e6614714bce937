// The machine's own read bandwidth: T threads each sum their share of a buffer much larger
// than the caches, several passes; prints the best pass in GB/s (10^9 bytes). Built and run by
// experiments/bench_decode.sh:  read_bandwidth [threads] [MiB]
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const size_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024;
  const size_t n = mib * 1024 * 1024 / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  std::vector<double> sums(threads);
  double best = 0;
  for (int pass = 0; pass < 7; ++pass) {
    std::atomic<int> ready{0};
    auto work = [&](int t) {
      const size_t a = n * t / threads, b = n * (t + 1) / threads;
      ready.fetch_add(1);
      while (ready.load() < threads) {
      }
      // Four streams per thread (four quarters of its share read side by side), as a
      // matrix-vector kernel reading four rows at once does.
      const size_t q = (b - a) / 4 / 32 * 32;
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      for (size_t i = 0; i < q; i += 16) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(&buf[a + i]));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(&buf[a + q + i]));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(&buf[a + 2 * q + i]));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(&buf[a + 3 * q + i]));
      }
      float out[16];
      _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
      double s = 0;
      for (float v : out) s += v;
      for (size_t i = a + 4 * q; i < b; ++i) s += buf[i];
      sums[t] = s;
    };
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double total = 0;
    for (double v : sums) total += v;
    if (total != static_cast<double>(n)) return 1;  // keeps the reads
    best = std::max(best, static_cast<double>(n * sizeof(float)) / s / 1e9);
  }
  std::printf("%.2f\n", best);
  return 0;
}
