// The machine's own read bandwidth: THREADS OpenMP threads sum a buffer much larger than the
// caches, reading four neighbouring rows of 2048 floats side by side as a matrix-vector
// kernel reads four weight rows at once (on the 2-vCPU EPYC this pattern reads about 1.4x
// faster with 2 threads than one plain stream per thread). Prints the best of 7 passes in GB/s
// (10^9 bytes). Built and run by experiments/bench_decode.sh:
//   read_bandwidth THREADS MIB
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const size_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024;
  constexpr size_t R = 2048;
  const size_t n = mib * 1024 * 1024 / sizeof(float) / (4 * R) * (4 * R);
  omp_set_num_threads(threads);
  std::vector<float> buf(n);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = 1.0f;  // first touch by the threads that read it
  double best = 0;
  for (int pass = 0; pass < 7; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    double total = 0;
#pragma omp parallel reduction(+ : total)
    {
#ifdef __AVX512F__
      using V = __m512;
      constexpr size_t W = 16;
      auto zero = [] { return _mm512_setzero_ps(); };
      auto add = [](V a, const float* p) { return _mm512_add_ps(a, _mm512_loadu_ps(p)); };
      auto store = [](float* p, V a) { _mm512_storeu_ps(p, a); };
#else
      using V = __m256;
      constexpr size_t W = 8;
      auto zero = [] { return _mm256_setzero_ps(); };
      auto add = [](V a, const float* p) { return _mm256_add_ps(a, _mm256_loadu_ps(p)); };
      auto store = [](float* p, V a) { _mm256_storeu_ps(p, a); };
#endif
      V s0 = zero(), s1 = zero(), s2 = zero(), s3 = zero();
#pragma omp for schedule(static)
      for (size_t r = 0; r < n / (4 * R); ++r) {
        const float* x = buf.data() + r * 4 * R;
        for (size_t c = 0; c < R; c += W) {
          s0 = add(s0, x + c);
          s1 = add(s1, x + R + c);
          s2 = add(s2, x + 2 * R + c);
          s3 = add(s3, x + 3 * R + c);
        }
      }
      float out[W];
      store(out, s0);
      for (float v : out) total += v;
      store(out, s1);
      for (float v : out) total += v;
      store(out, s2);
      for (float v : out) total += v;
      store(out, s3);
      for (float v : out) total += v;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (total != static_cast<double>(n)) return 1;  // keeps the reads
    best = std::max(best, static_cast<double>(n * sizeof(float)) / s / 1e9);
  }
  std::printf("%.2f\n", best);
  return 0;
}
