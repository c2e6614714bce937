// The AutoAWQ GEMM layout (docs/formats.md §7): 4-bit codes packed eight output channels per
// int32 word along the output dimension, nibble k holding channel 8c + kOrder[k]; zero points
// packed the same way and stored as they are; float16 scales [groups, out].
#include <ATen/TensorOperators.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/round.h>
#include <ATen/ops/zeros.h>

#include "llmc/core/error.h"
#include "kernels/kernels.h"
#include "packed_common.h"
#include "packed_formats.h"

namespace llmc::model {

namespace {

constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};  // nibble k <- channel kOrder[k]
constexpr const int* kReverse = kernels::kAwqReverse;  // channel j <- nibble kReverse[j]

// [rows, cols] codes 0..15 -> int32 [rows, cols/8].
at::Tensor pack_nibbles(const at::Tensor& codes) {
  const int64_t rows = codes.size(0), cols = codes.size(1);
  at::Tensor c = codes.to(c10::kLong).contiguous();
  at::Tensor out = at::empty({rows, cols / 8}, at::TensorOptions().dtype(c10::kInt));
  const int64_t* cp = c.data_ptr<int64_t>();
  int32_t* op = out.data_ptr<int32_t>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t w = 0; w < cols / 8; ++w) {
      uint32_t word = 0;
      for (int k = 0; k < 8; ++k) word |= static_cast<uint32_t>(cp[r * cols + w * 8 + kOrder[k]] & 0xF) << (4 * k);
      op[r * (cols / 8) + w] = static_cast<int32_t>(word);
    }
  }
  return out;
}

// int32 [rows, cols/8] -> int64 [rows, cols].
at::Tensor unpack_nibbles(const at::Tensor& packed) {
  at::Tensor p = packed.to(c10::kCPU).contiguous();
  const int64_t rows = p.size(0), words = p.size(1);
  at::Tensor out = at::empty({rows, words * 8}, at::TensorOptions().dtype(c10::kLong));
  const int32_t* pp = p.data_ptr<int32_t>();
  int64_t* op = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < rows * words; ++i) {
    const auto word = static_cast<uint32_t>(pp[i]);
    for (int j = 0; j < 8; ++j) op[i * 8 + j] = (word >> (4 * kReverse[j])) & 0xF;
  }
  return out;
}

void check_awq_shape(int64_t out, int64_t in, int64_t group_size) {
  if (out % 8 != 0) {
    throw UsageError("the AWQ GEMM layout packs 8 output channels per word: " + std::to_string(out) +
                     " outputs is not a multiple of 8");
  }
  if (group_size <= 0 || in % group_size != 0) {
    throw UsageError("AWQ --group_size " + std::to_string(group_size) + " must divide the input width " + std::to_string(in));
  }
}

}  // namespace

void AwqWeight::dequantize_rows(int64_t r0, int64_t r1, float* dst) const {
  const int64_t words = out / 8;
  const auto* q = qweight.data_ptr<int32_t>();
  const auto* z = qzeros.data_ptr<int32_t>();
  const auto* s = reinterpret_cast<const uint16_t*>(scales.data_ptr<c10::Half>());
  for (int64_t o = r0; o < r1; ++o) {
    const int64_t w = o / 8, shift = 4 * kReverse[o % 8];
    for (int64_t g = 0; g < in / group_size; ++g) {
      const float scale = c10::detail::fp16_ieee_to_fp32_value(s[g * out + o]);
      const float zero = static_cast<float>((static_cast<uint32_t>(z[g * words + w]) >> shift) & 0xF);
      for (int64_t i = g * group_size; i < (g + 1) * group_size; ++i) {
        const float code = static_cast<float>((static_cast<uint32_t>(q[i * words + w]) >> shift) & 0xF);
        *dst++ = (code - zero) * scale;
      }
    }
  }
}

at::Tensor AwqWeight::dequantize() const {
  at::Tensor q = unpack_nibbles(qweight).to(c10::kFloat);                                   // [in, out]
  at::Tensor z = unpack_nibbles(qzeros).to(c10::kFloat).repeat_interleave(group_size, 0);  // [in, out]
  at::Tensor s = scales.to(c10::kCPU, c10::kFloat).repeat_interleave(group_size, 0);
  return ((q - z) * s).t().contiguous();
}

at::Tensor AwqWeight::matmul(const at::Tensor& x) const {
  if (!qweight.device().is_cpu()) return at::matmul(x, dequantize().to(x.device(), x.scalar_type()).t());
  FlatInput f = flatten_input(x, in, out);
  // Decode: the packed kernel reads the codes once, eight channels per word.
  if (f.x2.size(0) <= 4) return vec_rows_matmul(*this, f.x2).reshape(f.out_shape).to(x.scalar_type());
  at::Tensor y = tiled_matmul(f.x2, out, in, [&](int64_t r0, int64_t r1, float* dst) { dequantize_rows(r0, r1, dst); });
  return y.reshape(f.out_shape).to(x.scalar_type());
}

int64_t AwqWeight::vec_units() const { return qweight.device().is_cpu() ? out / 8 : 0; }
int64_t AwqWeight::vec_scratch_floats() const { return in / group_size; }
void AwqWeight::vec_prepare(const float* x, float* sums) const {
  for (int64_t g = 0; g < in / group_size; ++g) {
    float s = 0.0f;
    for (int64_t i = g * group_size; i < (g + 1) * group_size; ++i) s += x[i];
    sums[g] = s;
  }
}
void AwqWeight::vec_compute(const float* x, const float* sums, int64_t a, int64_t b, float* y) const {
  kernels::best_kernels().dot_awq(qweight.data_ptr<int32_t>(), qzeros.data_ptr<int32_t>(),
                                  reinterpret_cast<const uint16_t*>(scales.data_ptr<c10::Half>()), a, b, in, out, group_size,
                                  x, sums, y);
}

NamedTensors AwqWeight::state_dict(const std::string& prefix) const {
  return {{prefix + "qweight", qweight}, {prefix + "qzeros", qzeros}, {prefix + "scales", scales}};
}

QuantGrid awq_grid(const at::Tensor& w) {
  at::Tensor x = w.to(c10::kFloat);
  at::Tensor mx = std::get<0>(x.max(1)), mn = std::get<0>(x.min(1));
  QuantGrid g;
  g.scale = at::clamp_min(mx - mn, 1e-5) / 15.0;
  g.zero = at::clamp(-at::round(mn / g.scale), 0, 15);
  return g;
}

std::unique_ptr<PackedWeight> pack_awq(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& zeros,
                                       int64_t group_size) {
  const int64_t out = codes.size(0), in = codes.size(1);
  check_awq_shape(out, in, group_size);
  auto w = std::make_unique<AwqWeight>();
  w->out = out;
  w->in = in;
  w->group_size = group_size;
  w->qweight = pack_nibbles(codes.t().contiguous());
  w->qzeros = pack_nibbles(zeros.to(c10::kLong).contiguous());
  w->scales = scales.to(c10::kHalf).contiguous();
  return w;
}

std::unique_ptr<PackedWeight> quantize_awq_rtn(const at::Tensor& weight, int64_t group_size) {
  const int64_t out = weight.size(0), in = weight.size(1);
  check_awq_shape(out, in, group_size);
  const int64_t groups = in / group_size;
  at::Tensor wg = weight.detach().to(c10::kCPU, c10::kFloat).reshape({out * groups, group_size});
  const QuantGrid grid = awq_grid(wg);
  at::Tensor codes = grid_codes(wg, grid, 4).reshape({out, in});
  return pack_awq(codes, grid.scale.reshape({out, groups}).t(), grid.zero.reshape({out, groups}).t(), group_size);
}

}  // namespace llmc::model
