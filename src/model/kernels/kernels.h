// Private: CPU kernels for packed weights, in a scalar reference and AVX2 / AVX-512 variants
// chosen at run time. Rows are independent, so callers split [row_begin, row_end) across
// threads.
#pragma once

#include <cstdint>

namespace llmc::model::kernels {

// 4-bit rows whose blocks do not cross rows (in % blocksize == 0, blocksize % 32 == 0).
// y[r] = sum_b absmax[r*bpr + b] * sum_{c in block} lut[code(r, c)] * x[c], where the codes
// of a row are packed two per byte, even element in the high nibble. x is given
// deinterleaved: x_even[j] = x[2j], x_odd[j] = x[2j+1].
using Dot4Fn = void (*)(const uint8_t* packed, const float* absmax, const float* lut, int64_t row_begin,
                        int64_t row_end, int64_t in, int64_t blocksize, const float* x_even, const float* x_odd,
                        float* y);

// int8 rows: y[r] = scale[r] * sum_c cb[r, c] * x[c].
using Dot8Fn = void (*)(const int8_t* cb, const float* scale, int64_t row_begin, int64_t row_end, int64_t in,
                        const float* x, float* y);

// Dequantizes 4-bit rows [row_begin, row_end) into out ([rows, in] float32); blocks may
// cross rows (flattened blocks of `blocksize` elements).
using Dequant4Fn = void (*)(const uint8_t* packed, const float* absmax, const float* lut, int64_t row_begin,
                            int64_t row_end, int64_t in, int64_t blocksize, float* out);

// float32 rows: y[r] = sum_c w[r, c] * x[c] (matrix-vector products of dense layers).
using Dot32Fn = void (*)(const float* w, int64_t row_begin, int64_t row_end, int64_t in, const float* x, float* y);

// float16 rows (IEEE half bits), float32 x: y[r] = sum_c half_to_float(w[r, c]) * x[c].
using Dot16Fn = void (*)(const uint16_t* w, int64_t row_begin, int64_t row_end, int64_t in, const float* x, float* y);

// AWQ GEMM layout (4-bit codes, 8 output channels per int32 word along the output, channel j
// of a word in nibble kAwqReverse[j]; zero points packed the same way; float16 scales
// [groups, out]): for the output channels of words [word_begin, word_end),
// y[o] = sum_g scale[g, o] * (sum_{i in g} code(i, o) x[i] - zero(g, o) * group_sums[g]),
// group_sums[g] = sum_{i in g} x[i].
using DotAwqFn = void (*)(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales, int64_t word_begin,
                          int64_t word_end, int64_t in, int64_t out, int64_t group, const float* x,
                          const float* group_sums, float* y);

// Maximum of x[0, n) and the index of its first occurrence, as torch.argmax: the first NaN
// (and NaN as the maximum) when there is one, index 0 when every value is −inf. n < 2^31.
using RowMaxFn = void (*)(const float* x, int64_t n, float* max, int64_t* at);

// The softmax sums of one position of a distribution comparison (eval/compare), given the two
// rows' finite maxima: with e_b = exp(xb − max_b) and e_m = exp(xm − max_m) in float32 (a
// polynomial within 2 ulp of exp; 0 below −87, where float32 sums cannot hold the mass),
// sums[0] = Σ e_b, sums[1] = Σ e_m, sums[2] = Σ over e_b > 0 of e_b·(xb − xm), accumulated in
// float64. The same row given as xm and xb yields sums[0] == sums[1] and sums[2] == 0 exactly.
using SoftmaxPairFn = void (*)(const float* xm, const float* xb, int64_t n, float max_m, float max_b, double* sums);

// Channel j of an AWQ word sits in nibble kAwqReverse[j] (packing order 0, 2, 4, 6, 1, 3, 5, 7).
constexpr int kAwqReverse[8] = {0, 4, 1, 5, 2, 6, 3, 7};

struct KernelSet {
  const char* name;
  Dot4Fn dot4;
  Dot8Fn dot8;
  Dequant4Fn dequant4;
  Dot32Fn dot32;
  Dot16Fn dot16;
  DotAwqFn dot_awq;
  RowMaxFn row_max;
  SoftmaxPairFn softmax_pair;
};

const KernelSet& scalar_kernels();
const KernelSet* avx2_kernels();    // null when the CPU or compiler lacks AVX2+FMA
const KernelSet* avx512_kernels();  // null when the CPU or compiler lacks AVX-512F
// The fastest set this CPU supports ($LLMC_KERNELS=scalar|avx2|avx512 forces one).
const KernelSet& best_kernels();

}  // namespace llmc::model::kernels
