// AVX2 and AVX-512 variants, compiled with function-level target attributes so the library
// runs on any x86-64 CPU; best_kernels() picks one at run time.
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define LLMC_X86 1
#endif

namespace llmc::model::kernels {

#ifdef LLMC_X86
namespace {

// ---------------------------------------------------------------- AVX-512

__attribute__((target("avx512f"))) inline float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

__attribute__((target("avx512f"))) void dot4_avx512(const uint8_t* packed, const float* absmax, const float* lut,
                                                    int64_t row_begin, int64_t row_end, int64_t in,
                                                    int64_t blocksize, const float* x_even, const float* x_odd,
                                                    float* y) {
  const __m512 table = _mm512_loadu_ps(lut);
  const __m512i low_mask = _mm512_set1_epi32(0x0F);
  const int64_t bpr = in / blocksize;
  const int64_t half_block = blocksize / 2;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row = packed + r * (in / 2);
    __m512 total = _mm512_setzero_ps();
    for (int64_t b = 0; b < bpr; ++b) {
      __m512 acc = _mm512_setzero_ps();
      for (int64_t j = b * half_block; j < (b + 1) * half_block; j += 16) {
        // 16 bytes = 32 codes: high nibbles are the even elements, low nibbles the odd ones.
        const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j)));
        const __m512 w_even = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table);
        const __m512 w_odd = _mm512_permutexvar_ps(_mm512_and_si512(bytes, low_mask), table);
        acc = _mm512_fmadd_ps(w_even, _mm512_loadu_ps(x_even + j), acc);
        acc = _mm512_fmadd_ps(w_odd, _mm512_loadu_ps(x_odd + j), acc);
      }
      total = _mm512_fmadd_ps(_mm512_set1_ps(absmax[r * bpr + b]), acc, total);
    }
    y[r] = hsum512(total);
  }
}

__attribute__((target("avx512f"))) void dot8_avx512(const int8_t* cb, const float* scale, int64_t row_begin,
                                                    int64_t row_end, int64_t in, const float* x, float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int8_t* row = cb + r * in;
    __m512 acc = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= in; c += 16) {
      const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c)));
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(x + c), acc);
    }
    float tail = 0.0f;
    for (; c < in; ++c) tail += static_cast<float>(row[c]) * x[c];
    y[r] = scale[r] * (hsum512(acc) + tail);
  }
}

__attribute__((target("avx512f"))) void dequant4_avx512(const uint8_t* packed, const float* absmax, const float* lut,
                                                        int64_t row_begin, int64_t row_end, int64_t in,
                                                        int64_t blocksize, float* out) {
  const __m512 table = _mm512_loadu_ps(lut);
  const __m512i low_mask = _mm512_set1_epi32(0x0F);
  // Interleave even/odd lanes back: result[2j] = even[j], result[2j+1] = odd[j].
  const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  int64_t i = row_begin * in;
  const int64_t end = row_end * in;
  // Scalar until 32-aligned in the flat index (so 32 codes never straddle a block of >= 32).
  for (; i < end && (i % 32) != 0; ++i) {
    const uint8_t b = packed[i >> 1];
    *out++ = lut[(i & 1) ? (b & 0x0F) : (b >> 4)] * absmax[i / blocksize];
  }
  for (; i + 32 <= end; i += 32) {
    const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + (i >> 1))));
    const __m512 scale = _mm512_set1_ps(absmax[i / blocksize]);
    const __m512 w_even = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table), scale);
    const __m512 w_odd = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_and_si512(bytes, low_mask), table), scale);
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(w_even, lo_idx, w_odd));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(w_even, hi_idx, w_odd));
    out += 32;
  }
  for (; i < end; ++i) {
    const uint8_t b = packed[i >> 1];
    *out++ = lut[(i & 1) ? (b & 0x0F) : (b >> 4)] * absmax[i / blocksize];
  }
}

// Dense rows, four at a time: each x vector is loaded once for four rows, and four row
// streams keep more loads in flight than one (these products are bound by memory reads).
template <bool Half>
__attribute__((target("avx512f"))) inline __m512 load16_avx512(const void* w, int64_t i) {
  if constexpr (Half) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i)));
  } else {
    return _mm512_loadu_ps(static_cast<const float*>(w) + i);
  }
}

template <bool Half>
__attribute__((target("avx512f"))) inline float tail_dot(const void* w, int64_t r, int64_t c0, int64_t in, const float* x) {
  float t = 0.0f;
  for (int64_t c = c0; c < in; ++c) {
    const float v = Half ? c10::detail::fp16_ieee_to_fp32_value(static_cast<const uint16_t*>(w)[r * in + c])
                         : static_cast<const float*>(w)[r * in + c];
    t += v * x[c];
  }
  return t;
}

template <bool Half>
__attribute__((target("avx512f"))) void dense_rows_avx512(const void* w, int64_t row_begin, int64_t row_end, int64_t in,
                                                          const float* x, float* y) {
  const int64_t body = in / 16 * 16;
  int64_t r = row_begin;
  for (; r + 4 <= row_end; r += 4) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (int64_t c = 0; c < body; c += 16) {
      const __m512 xv = _mm512_loadu_ps(x + c);
      a0 = _mm512_fmadd_ps(load16_avx512<Half>(w, r * in + c), xv, a0);
      a1 = _mm512_fmadd_ps(load16_avx512<Half>(w, (r + 1) * in + c), xv, a1);
      a2 = _mm512_fmadd_ps(load16_avx512<Half>(w, (r + 2) * in + c), xv, a2);
      a3 = _mm512_fmadd_ps(load16_avx512<Half>(w, (r + 3) * in + c), xv, a3);
    }
    y[r] = hsum512(a0) + tail_dot<Half>(w, r, body, in, x);
    y[r + 1] = hsum512(a1) + tail_dot<Half>(w, r + 1, body, in, x);
    y[r + 2] = hsum512(a2) + tail_dot<Half>(w, r + 2, body, in, x);
    y[r + 3] = hsum512(a3) + tail_dot<Half>(w, r + 3, body, in, x);
  }
  for (; r < row_end; ++r) {
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t c = 0; c < body; c += 16) a0 = _mm512_fmadd_ps(load16_avx512<Half>(w, r * in + c), _mm512_loadu_ps(x + c), a0);
    y[r] = hsum512(a0) + tail_dot<Half>(w, r, body, in, x);
  }
}

__attribute__((target("avx512f"))) void dot32_avx512(const float* w, int64_t row_begin, int64_t row_end, int64_t in,
                                                     const float* x, float* y) {
  dense_rows_avx512<false>(w, row_begin, row_end, in, x, y);
}

__attribute__((target("avx512f"))) void dot16_avx512(const uint16_t* w, int64_t row_begin, int64_t row_end, int64_t in,
                                                     const float* x, float* y) {
  dense_rows_avx512<true>(w, row_begin, row_end, in, x, y);
}

// ---------------------------------------------------------------- AVX2

// 16-entry lookup with 8-lane permutes: pick from the low or high half by bit 3.
__attribute__((target("avx2,fma"))) inline __m256 lookup16(__m256i idx, __m256 lo, __m256 hi) {
  const __m256 a = _mm256_permutevar8x32_ps(lo, idx);
  const __m256 b = _mm256_permutevar8x32_ps(hi, idx);
  const __m256 use_hi = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));  // bit 3 -> sign bit
  return _mm256_blendv_ps(a, b, use_hi);
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) void dot4_avx2(const uint8_t* packed, const float* absmax, const float* lut,
                                                   int64_t row_begin, int64_t row_end, int64_t in, int64_t blocksize,
                                                   const float* x_even, const float* x_odd, float* y) {
  const __m256 lo = _mm256_loadu_ps(lut), hi = _mm256_loadu_ps(lut + 8);
  const __m256i low_mask = _mm256_set1_epi32(0x0F);
  const int64_t bpr = in / blocksize;
  const int64_t half_block = blocksize / 2;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row = packed + r * (in / 2);
    __m256 total = _mm256_setzero_ps();
    for (int64_t b = 0; b < bpr; ++b) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t j = b * half_block; j < (b + 1) * half_block; j += 8) {
        const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + j)));
        acc = _mm256_fmadd_ps(lookup16(_mm256_srli_epi32(bytes, 4), lo, hi), _mm256_loadu_ps(x_even + j), acc);
        acc = _mm256_fmadd_ps(lookup16(_mm256_and_si256(bytes, low_mask), lo, hi), _mm256_loadu_ps(x_odd + j), acc);
      }
      total = _mm256_fmadd_ps(_mm256_set1_ps(absmax[r * bpr + b]), acc, total);
    }
    y[r] = hsum256(total);
  }
}

__attribute__((target("avx2,fma"))) void dot8_avx2(const int8_t* cb, const float* scale, int64_t row_begin,
                                                   int64_t row_end, int64_t in, const float* x, float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int8_t* row = cb + r * in;
    __m256 acc = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= in; c += 8) {
      const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c)));
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(x + c), acc);
    }
    float tail = 0.0f;
    for (; c < in; ++c) tail += static_cast<float>(row[c]) * x[c];
    y[r] = scale[r] * (hsum256(acc) + tail);
  }
}

__attribute__((target("avx2,fma"))) void dot32_avx2(const float* w, int64_t row_begin, int64_t row_end, int64_t in,
                                                    const float* x, float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* row = w + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= in; c += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + 8), _mm256_loadu_ps(x + c + 8), a1);
    }
    float tail = 0.0f;
    for (; c < in; ++c) tail += row[c] * x[c];
    y[r] = hsum256(_mm256_add_ps(a0, a1)) + tail;
  }
}

__attribute__((target("avx2,fma,f16c"))) void dot16_avx2(const uint16_t* w, int64_t row_begin, int64_t row_end,
                                                         int64_t in, const float* x, float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint16_t* row = w + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= in; c += 16) {
      const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c)));
      const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c + 8)));
      a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + c), a0);
      a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + c + 8), a1);
    }
    float tail = 0.0f;
    for (; c < in; ++c) tail += c10::detail::fp16_ieee_to_fp32_value(row[c]) * x[c];
    y[r] = hsum256(_mm256_add_ps(a0, a1)) + tail;
  }
}

// Eight output channels of one AWQ word as floats, channel j from nibble kAwqReverse[j].
__attribute__((target("avx2,fma,f16c"))) inline __m256 awq_word(int32_t word) {
  const __m256i shifts = _mm256_setr_epi32(0, 16, 4, 20, 8, 24, 12, 28);
  return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(word), shifts), _mm256_set1_epi32(0xF)));
}

// Up to 16 words (128 output channels) at a time, so that one row's words share a cache line.
__attribute__((target("avx2,fma,f16c"))) void dot_awq_avx2(const int32_t* qweight, const int32_t* qzeros,
                                                           const uint16_t* scales, int64_t word_begin,
                                                           int64_t word_end, int64_t in, int64_t out, int64_t group,
                                                           const float* x, const float* group_sums, float* y) {
  const int64_t words = out / 8;
  for (int64_t w0 = word_begin; w0 < word_end; w0 += 16) {
    const int64_t nw = std::min<int64_t>(16, word_end - w0);
    __m256 res[16], acc[16];
    for (int64_t k = 0; k < nw; ++k) res[k] = _mm256_setzero_ps();
    for (int64_t g = 0; g < in / group; ++g) {
      for (int64_t k = 0; k < nw; ++k) acc[k] = _mm256_setzero_ps();
      for (int64_t i = g * group; i < (g + 1) * group; ++i) {
        const __m256 xb = _mm256_set1_ps(x[i]);
        const int32_t* row = qweight + i * words + w0;
        for (int64_t k = 0; k < nw; ++k) acc[k] = _mm256_fmadd_ps(awq_word(row[k]), xb, acc[k]);
      }
      const __m256 gx = _mm256_set1_ps(group_sums[g]);
      for (int64_t k = 0; k < nw; ++k) {
        const __m256 zero = awq_word(qzeros[g * words + w0 + k]);
        const __m256 scale =
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + g * out + (w0 + k) * 8)));
        res[k] = _mm256_fmadd_ps(scale, _mm256_fnmadd_ps(zero, gx, acc[k]), res[k]);
      }
    }
    for (int64_t k = 0; k < nw; ++k) _mm256_storeu_ps(y + (w0 + k) * 8, res[k]);
  }
}

// The lanes of a 16-float step that hold data when `left` values remain.
inline __mmask16 lanes_left(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

// Maximum and first index over 16 lanes; lanes keep their first maximum (strictly greater
// replaces), the lowest index among the lanes holding the overall maximum wins.
__attribute__((target("avx512f"))) void row_max_avx512(const float* x, int64_t n, float* max, int64_t* at) {
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 best = neg_inf;
  __m512i best_at = _mm512_set1_epi32(-1);
  __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  __mmask16 nan = 0;
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 live = lanes_left(n - j);
    const __m512 v = _mm512_mask_loadu_ps(neg_inf, live, x + j);
    nan = static_cast<__mmask16>(nan | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
    const __mmask16 gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
    best = _mm512_mask_mov_ps(best, gt, v);
    best_at = _mm512_mask_mov_epi32(best_at, gt, idx);
    idx = _mm512_add_epi32(idx, step);
  }
  if (nan != 0) {  // the first NaN: the scalar scan finds it
    scalar_kernels().row_max(x, n, max, at);
    return;
  }
  alignas(64) float lane_best[16];
  alignas(64) int32_t lane_at[16];
  _mm512_store_ps(lane_best, best);
  _mm512_store_si512(lane_at, best_at);
  float m = -std::numeric_limits<float>::infinity();
  int64_t where = -1;
  for (int k = 0; k < 16; ++k) {
    if (lane_at[k] < 0) continue;
    if (where < 0 || lane_best[k] > m || (lane_best[k] == m && lane_at[k] < where)) {
      m = lane_best[k];
      where = lane_at[k];
    }
  }
  *max = m;
  *at = where < 0 ? 0 : where;
}

// exp(x) for x <= 0 on 16 lanes, the scalar kernel's polynomial with fused multiply-adds.
__attribute__((target("avx512f"))) inline __m512 exp_nonpositive_avx512(__m512 x) {
  const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_NGE_UQ);
  const __m512 xc = _mm512_mask_mov_ps(x, under, _mm512_setzero_ps());
  const __m512 shifter = _mm512_set1_ps(12582912.0f);
  const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), shifter);
  const __m512 k = _mm512_sub_ps(t, shifter);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fmadd_ps(k, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 er = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512i kb = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000 - 127));
  const __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(kb, 23));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), _mm512_mul_ps(er, scale));
}

__attribute__((target("avx512f"))) inline void add_as_double(__m512d& lo, __m512d& hi, __m512 v) {
  lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  // The upper eight lanes by a lane shuffle (GCC 12 warns falsely on _mm512_extractf64x4_pd).
  hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2)))));
}

__attribute__((target("avx512f"))) void softmax_pair_avx512(const float* xm, const float* xb, int64_t n, float max_m,
                                                            float max_b, double* sums) {
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 mm = _mm512_set1_ps(max_m), mb = _mm512_set1_ps(max_b);
  __m512d sb_lo = _mm512_setzero_pd(), sb_hi = sb_lo, sm_lo = sb_lo, sm_hi = sb_lo, c_lo = sb_lo, c_hi = sb_lo;
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 live = lanes_left(n - j);
    const __m512 b = _mm512_mask_loadu_ps(neg_inf, live, xb + j);
    const __m512 m = _mm512_mask_loadu_ps(neg_inf, live, xm + j);
    const __m512 eb = exp_nonpositive_avx512(_mm512_sub_ps(b, mb));
    const __m512 em = exp_nonpositive_avx512(_mm512_sub_ps(m, mm));
    const __mmask16 mass = _mm512_cmp_ps_mask(eb, _mm512_setzero_ps(), _CMP_GT_OQ);
    const __m512 c = _mm512_maskz_mul_ps(mass, eb, _mm512_sub_ps(b, m));
    add_as_double(sb_lo, sb_hi, eb);
    add_as_double(sm_lo, sm_hi, em);
    add_as_double(c_lo, c_hi, c);
  }
  sums[0] = _mm512_reduce_add_pd(_mm512_add_pd(sb_lo, sb_hi));
  sums[1] = _mm512_reduce_add_pd(_mm512_add_pd(sm_lo, sm_hi));
  sums[2] = _mm512_reduce_add_pd(_mm512_add_pd(c_lo, c_hi));
}

bool cpu_has(const char* feature) {
  __builtin_cpu_init();
  if (std::strcmp(feature, "avx512f") == 0) return __builtin_cpu_supports("avx512f");
  // F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know it.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && ((ecx >> 29) & 1u) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}

}  // namespace

const KernelSet* avx512_kernels() {
  // AWQ's eight channels per word fill one 256-bit vector: the AVX2 kernel serves here too.
  static const KernelSet set{"avx512",     dot4_avx512,  dot8_avx512,   dequant4_avx512,    dot32_avx512,
                             dot16_avx512, dot_awq_avx2, row_max_avx512, softmax_pair_avx512};
  return cpu_has("avx512f") ? &set : nullptr;
}

const KernelSet* avx2_kernels() {
  // The dequantization of whole tiles is memory-bound; the scalar loop serves AVX2 machines.
  // The comparison's row kernels (eval/compare) run the scalar ones on AVX2 machines.
  static const KernelSet set{"avx2",     dot4_avx2,    dot8_avx2,
                             scalar_kernels().dequant4, dot32_avx2, dot16_avx2,
                             dot_awq_avx2, scalar_kernels().row_max, scalar_kernels().softmax_pair};
  return cpu_has("avx2") ? &set : nullptr;
}

#else
const KernelSet* avx512_kernels() { return nullptr; }
const KernelSet* avx2_kernels() { return nullptr; }
#endif

const KernelSet& best_kernels() {
  static const KernelSet* chosen = [] {
    const char* force = std::getenv("LLMC_KERNELS");
    const std::string want = force != nullptr ? force : "";
    if (want == "scalar") return &scalar_kernels();
    if (want == "avx2" && avx2_kernels() != nullptr) return avx2_kernels();
    if ((want.empty() || want == "avx512") && avx512_kernels() != nullptr) return avx512_kernels();
    if (avx2_kernels() != nullptr) return avx2_kernels();
    return &scalar_kernels();
  }();
  return *chosen;
}

}  // namespace llmc::model::kernels
