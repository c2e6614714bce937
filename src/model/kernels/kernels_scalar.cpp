#include <c10/util/Half.h>

#include <cstring>
#include <limits>

#include "kernels.h"

namespace llmc::model::kernels {

namespace {

inline int code_at(const uint8_t* packed, int64_t i) {
  const uint8_t b = packed[i >> 1];
  return (i & 1) ? (b & 0x0F) : (b >> 4);
}

void dot4_scalar(const uint8_t* packed, const float* absmax, const float* lut, int64_t row_begin, int64_t row_end,
                 int64_t in, int64_t blocksize, const float* x_even, const float* x_odd, float* y) {
  const int64_t bpr = in / blocksize;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row = packed + r * (in / 2);
    float total = 0.0f;
    for (int64_t b = 0; b < bpr; ++b) {
      float acc = 0.0f;
      for (int64_t j = b * blocksize / 2; j < (b + 1) * blocksize / 2; ++j) {
        acc += lut[row[j] >> 4] * x_even[j] + lut[row[j] & 0x0F] * x_odd[j];
      }
      total += absmax[r * bpr + b] * acc;
    }
    y[r] = total;
  }
}

void dot8_scalar(const int8_t* cb, const float* scale, int64_t row_begin, int64_t row_end, int64_t in, const float* x,
                 float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int8_t* row = cb + r * in;
    float acc = 0.0f;
    for (int64_t c = 0; c < in; ++c) acc += static_cast<float>(row[c]) * x[c];
    y[r] = scale[r] * acc;
  }
}

void dequant4_scalar(const uint8_t* packed, const float* absmax, const float* lut, int64_t row_begin, int64_t row_end,
                     int64_t in, int64_t blocksize, float* out) {
  for (int64_t i = row_begin * in; i < row_end * in; ++i) {
    *out++ = lut[code_at(packed, i)] * absmax[i / blocksize];
  }
}

void dot32_scalar(const float* w, int64_t row_begin, int64_t row_end, int64_t in, const float* x, float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* row = w + r * in;
    float acc = 0.0f;
    for (int64_t c = 0; c < in; ++c) acc += row[c] * x[c];
    y[r] = acc;
  }
}

void dot16_scalar(const uint16_t* w, int64_t row_begin, int64_t row_end, int64_t in, const float* x, float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint16_t* row = w + r * in;
    float acc = 0.0f;
    for (int64_t c = 0; c < in; ++c) acc += c10::detail::fp16_ieee_to_fp32_value(row[c]) * x[c];
    y[r] = acc;
  }
}

void dot_awq_scalar(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales, int64_t word_begin,
                    int64_t word_end, int64_t in, int64_t out, int64_t group, const float* x, const float* group_sums,
                    float* y) {
  const int64_t words = out / 8;
  for (int64_t w = word_begin; w < word_end; ++w) {
    for (int j = 0; j < 8; ++j) {
      const int shift = 4 * kAwqReverse[j];
      const int64_t o = w * 8 + j;
      float total = 0.0f;
      for (int64_t g = 0; g < in / group; ++g) {
        float acc = 0.0f;
        for (int64_t i = g * group; i < (g + 1) * group; ++i) {
          acc += static_cast<float>((static_cast<uint32_t>(qweight[i * words + w]) >> shift) & 0xF) * x[i];
        }
        const float zero = static_cast<float>((static_cast<uint32_t>(qzeros[g * words + w]) >> shift) & 0xF);
        total += c10::detail::fp16_ieee_to_fp32_value(scales[g * out + o]) * (acc - zero * group_sums[g]);
      }
      y[o] = total;
    }
  }
}

void row_max_scalar(const float* x, int64_t n, float* max, int64_t* at) {
  float best = -std::numeric_limits<float>::infinity();
  int64_t where = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (x[j] != x[j]) {  // NaN: the first one wins
      *max = x[j];
      *at = j;
      return;
    }
    if (x[j] > best) {
      best = x[j];
      where = j;
    }
  }
  *max = best;
  *at = where;
}

// exp(x) for x <= 0: x = k·ln 2 + r with |r| <= ln(2)/2 (ln 2 in two parts), e^r by Cephes'
// expf polynomial, 2^k from the exponent bits; 0 below −87 and for −inf.
inline float exp_nonpositive(float x) {
  if (!(x >= -87.0f)) return 0.0f;
  const float shifter = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + shifter;
  const float k = t - shifter;
  int32_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const int32_t scale_bits = (bits - 0x4B400000 + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return (p * r * r + r + 1.0f) * scale;
}

void softmax_pair_scalar(const float* xm, const float* xb, int64_t n, float max_m, float max_b, double* sums) {
  double sb = 0, sm = 0, cross = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float eb = exp_nonpositive(xb[j] - max_b);
    sb += static_cast<double>(eb);
    sm += static_cast<double>(exp_nonpositive(xm[j] - max_m));
    if (eb > 0) cross += static_cast<double>(eb * (xb[j] - xm[j]));
  }
  sums[0] = sb;
  sums[1] = sm;
  sums[2] = cross;
}

}  // namespace

const KernelSet& scalar_kernels() {
  static const KernelSet set{"scalar",       dot4_scalar,    dot8_scalar,        dequant4_scalar, dot32_scalar,
                             dot16_scalar,   dot_awq_scalar, row_max_scalar,     softmax_pair_scalar};
  return set;
}

}  // namespace llmc::model::kernels
