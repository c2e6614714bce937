// The GPTQ checkpoint layout, v1 and v2 (docs/formats.md §6), GPTQ's quantizer, and
// round-to-nearest codes in that layout.
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/round.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <numeric>

#include "llmc/core/error.h"
#include "packed_common.h"
#include "packed_formats.h"

namespace llmc::model {

namespace {

// Codes are an LSB-first bit stream along dim 0, cut into 32-bit words (for 3 bits, 32
// values fill 3 words; for 2/4/8 bits, 32/b values fill one).
at::Tensor pack_bits(const at::Tensor& codes, int64_t bits) {
  const int64_t n = codes.size(0);
  const int64_t group = 32 / std::gcd<int64_t>(32, bits);  // values per whole number of words
  const int64_t words = group * bits / 32;
  at::Tensor q = codes.to(c10::kLong).reshape({n / group, group, -1});
  at::Tensor out = at::zeros({n / group, words, q.size(2)}, q.options());
  for (int64_t k = 0; k < group; ++k) {
    const int64_t off = bits * k, w = off / 32, s = off % 32;
    at::Tensor v = q.select(1, k);
    out.select(1, w).add_(v.__lshift__(s).bitwise_and(int64_t{0xFFFFFFFF}));
    if (s + bits > 32) out.select(1, w + 1).add_(v.__rshift__(32 - s));
  }
  out = out.reshape({n / group * words, -1});
  return at::where(out >= (int64_t{1} << 31), out - (int64_t{1} << 32), out).to(c10::kInt);
}

at::Tensor unpack_bits(const at::Tensor& packed, int64_t bits, int64_t n) {
  const int64_t group = 32 / std::gcd<int64_t>(32, bits);
  const int64_t words = group * bits / 32;
  at::Tensor w32 = packed.to(c10::kLong).bitwise_and(int64_t{0xFFFFFFFF}).reshape({n / group, words, -1});
  const int64_t mask = (int64_t{1} << bits) - 1;
  at::Tensor out = at::empty({n / group, group, w32.size(2)}, w32.options());
  for (int64_t k = 0; k < group; ++k) {
    const int64_t off = bits * k, w = off / 32, s = off % 32;
    at::Tensor v = w32.select(1, w).__rshift__(s);
    if (s + bits > 32) v = v.bitwise_or(w32.select(1, w + 1).__lshift__(32 - s));
    out.select(1, k).copy_(v.bitwise_and(mask));
  }
  return out.reshape({n, -1});
}

void check_packable(int64_t bits, int64_t group_size, int64_t out, int64_t in) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    throw UsageError("the GPTQ layout holds 2, 3, 4 or 8-bit codes, not " + std::to_string(bits));
  }
  const int64_t group = 32 / std::gcd<int64_t>(32, bits);
  if (in % group != 0 || out % group != 0) {
    throw UsageError("the GPTQ layout packs " + std::to_string(group) + " " + std::to_string(bits) +
                     "-bit values at a time: a " + std::to_string(out) + " x " + std::to_string(in) +
                     " weight cannot be packed (both sizes must be multiples of " + std::to_string(group) + ")");
  }
  if (group_size != -1 && (group_size <= 0 || in % group_size != 0)) {
    throw UsageError("--group_size " + std::to_string(group_size) + " must be -1 or divide the input width " +
                     std::to_string(in));
  }
}

}  // namespace

at::Tensor GptqWeight::codes() const { return unpack_bits(qweight, bits, in); }

at::Tensor GptqWeight::zeros() const {
  return unpack_bits(qzeros.t().contiguous(), bits, out).t() + (v2 ? 0 : 1);  // v1 stores zero - 1
}

at::Tensor GptqWeight::dequantize() const {
  at::Tensor gi = g_idx.to(c10::kLong);
  at::Tensor s = scales.to(c10::kFloat).index_select(0, gi);        // [in, out]
  at::Tensor z = zeros().to(c10::kFloat).index_select(0, gi);       // [in, out]
  return (s * (codes().to(c10::kFloat) - z)).t().contiguous();      // [out, in]
}

at::Tensor GptqWeight::matmul(const at::Tensor& x) const {
  if (!qweight.device().is_cpu()) return at::matmul(x, dequantize().to(x.scalar_type()).t());
  FlatInput f = flatten_input(x, in, out);
  if (f.x2.size(0) <= 4) return vec_rows_matmul(*this, f.x2).reshape(f.out_shape).to(x.scalar_type());
  const int64_t group = 32 / std::gcd<int64_t>(32, bits);
  // Tiles of output columns, a multiple of `group` (qzeros packs `group` outputs per
  // `group * bits / 32` words), about 1 MiB of float weights each.
  const int64_t tile = std::max<int64_t>(group, ((1 << 18) / in) / group * group);
  at::Tensor y = at::empty({f.x2.size(0), out}, f.x2.options());
  at::Tensor gi = g_idx.to(c10::kLong);
  const int64_t words_per_group = group * bits / 32;
  const int64_t offset = v2 ? 0 : 1;
  for (int64_t c0 = 0; c0 < out; c0 += tile) {
    const int64_t c1 = std::min(out, c0 + tile);
    at::Tensor q = unpack_bits(qweight.narrow(1, c0, c1 - c0), bits, in).to(c10::kFloat);  // [in, cols]
    at::Tensor zw = qzeros.narrow(1, c0 / group * words_per_group, (c1 - c0) / group * words_per_group);
    at::Tensor z = (unpack_bits(zw.t().contiguous(), bits, c1 - c0).t() + offset).to(c10::kFloat);  // [groups, cols]
    at::Tensor s = scales.narrow(1, c0, c1 - c0).to(c10::kFloat);
    at::Tensor w = s.index_select(0, gi) * (q - z.index_select(0, gi));  // [in, cols]
    y.narrow(1, c0, c1 - c0).copy_(at::mm(f.x2, w));
  }
  return y.reshape(f.out_shape).to(x.scalar_type());
}

namespace {

// y[o] = sum_i scale[g(i), o] * (code(i, o) - zero[g(i), o]) * x[i] for o in [o0, o1), codes
// read from the LSB-first bit stream of each qweight column (pack_bits); vectorised across
// output channels, 64 at a time. With consecutive groups the codes of a group are summed
// against x first and scaled once: scale * (sum code x - zero * sum x).
__attribute__((target_clones("avx512f", "avx2", "default"))) void gptq_vec_rows(
    const uint32_t* qw, const float* scales, const float* zeros, const int32_t* gidx, bool consecutive, int64_t bits,
    int64_t in, int64_t out, int64_t groups, const float* x, const float* xsum, int64_t o0, int64_t o1, float* y) {
  constexpr int64_t C = 64;
  const uint32_t mask = (1u << bits) - 1u;
  const int64_t gs = in / groups;
  float acc[C], tot[C];
  for (int64_t c0 = o0; c0 < o1; c0 += C) {
    const int64_t n = std::min(C, o1 - c0);
    for (int64_t j = 0; j < n; ++j) tot[j] = 0.0f;
    for (int64_t g = 0; g < (consecutive ? groups : 1); ++g) {
      const int64_t i0 = consecutive ? g * gs : 0, i1 = consecutive ? i0 + gs : in;
      for (int64_t j = 0; j < n; ++j) acc[j] = 0.0f;
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t p = i * bits, sh = p & 31;
        const uint32_t* r0 = qw + (p >> 5) * out + c0;
        const float xi = x[i];
        if (consecutive) {
          if (sh + bits <= 32) {
            for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<float>((r0[j] >> sh) & mask) * xi;
          } else {
            const uint32_t* r1 = r0 + out;
            for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<float>(((r0[j] >> sh) | (r1[j] << (32 - sh))) & mask) * xi;
          }
        } else {
          const float* s = scales + static_cast<int64_t>(gidx[i]) * out + c0;
          const float* z = zeros + static_cast<int64_t>(gidx[i]) * out + c0;
          const uint32_t* r1 = sh + bits > 32 ? r0 + out : r0;
          const int64_t back = sh + bits > 32 ? 32 - sh : 0;
          for (int64_t j = 0; j < n; ++j) {
            const uint32_t hi = back > 0 ? r1[j] << back : 0u;
            acc[j] += s[j] * (static_cast<float>(((r0[j] >> sh) | hi) & mask) - z[j]) * xi;
          }
        }
      }
      if (consecutive) {
        const float* s = scales + g * out + c0;
        const float* z = zeros + g * out + c0;
        for (int64_t j = 0; j < n; ++j) tot[j] += s[j] * (acc[j] - z[j] * xsum[g]);
      } else {
        for (int64_t j = 0; j < n; ++j) tot[j] = acc[j];
      }
    }
    for (int64_t j = 0; j < n; ++j) y[c0 + j] = tot[j];
  }
}

}  // namespace

int64_t GptqWeight::vec_units() const { return qweight.device().is_cpu() ? out : 0; }
int64_t GptqWeight::vec_scratch_floats() const { return scales.size(0); }
void GptqWeight::vec_prepare(const float* x, float* xsum) const {
  const int64_t groups = scales.size(0);
  if (!vec_scales_.defined()) {
    vec_scales_ = scales.to(c10::kFloat).contiguous();
    vec_zeros_ = zeros().to(c10::kFloat).contiguous();
    vec_gidx_ = g_idx.to(c10::kInt).contiguous();
    const int32_t* gi = vec_gidx_.data_ptr<int32_t>();
    vec_consecutive_ = in % groups == 0;
    for (int64_t i = 0; i < in && vec_consecutive_; ++i) vec_consecutive_ = gi[i] == i / (in / groups);
  }
  if (!vec_consecutive_) return;
  const int64_t gs = in / groups;
  for (int64_t g = 0; g < groups; ++g) {
    float s = 0.0f;
    for (int64_t i = g * gs; i < (g + 1) * gs; ++i) s += x[i];
    xsum[g] = s;
  }
}
void GptqWeight::vec_compute(const float* x, const float* xsum, int64_t a, int64_t b, float* y) const {
  gptq_vec_rows(reinterpret_cast<const uint32_t*>(qweight.data_ptr<int32_t>()), vec_scales_.data_ptr<float>(),
                vec_zeros_.data_ptr<float>(), vec_gidx_.data_ptr<int32_t>(), vec_consecutive_, bits, in, out,
                scales.size(0), x, xsum, a, b, y);
}

NamedTensors GptqWeight::state_dict(const std::string& prefix) const {
  return {{prefix + "qweight", qweight}, {prefix + "qzeros", qzeros}, {prefix + "scales", scales}, {prefix + "g_idx", g_idx}};
}

std::unique_ptr<PackedWeight> pack_gptq(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& zeros,
                                        const at::Tensor& g_idx, const GptqOptions& o) {
  const int64_t out = codes.size(0), in = codes.size(1);
  check_packable(o.bits, o.group_size, out, in);
  auto w = std::make_unique<GptqWeight>();
  w->bits = o.bits;
  w->group_size = o.group_size == -1 ? in : o.group_size;
  w->out = out;
  w->in = in;
  w->sym = o.sym;
  w->v2 = !o.sym;
  w->qweight = pack_bits(codes.t().contiguous(), o.bits).contiguous();
  at::Tensor z = zeros.defined() ? zeros.to(c10::kLong)
                                 : at::full({scales.size(0), out}, int64_t{1} << (o.bits - 1), at::TensorOptions().dtype(c10::kLong));
  if (!w->v2) z = z - 1;  // v1 stores zero - 1 (a zero of 0 cannot be held: docs/formats.md §6)
  w->qzeros = pack_bits(z.t().contiguous(), o.bits).t().contiguous();
  w->scales = scales.to(c10::kHalf).contiguous();
  w->g_idx = g_idx.to(c10::kInt).contiguous();
  return w;
}

QuantGrid gptq_grid(const at::Tensor& w, int64_t bits, bool sym) {
  const double maxq = static_cast<double>((int64_t{1} << bits) - 1);
  at::Tensor x = w.to(c10::kFloat);
  at::Tensor xmin = at::clamp_max(std::get<0>(x.min(1)), 0.0);
  at::Tensor xmax = at::clamp_min(std::get<0>(x.max(1)), 0.0);
  if (sym) {
    xmax = at::maximum(xmin.abs(), xmax);
    xmin = at::where(xmin < 0, -xmax, xmin);
  }
  at::Tensor both_zero = (xmin == 0).logical_and(xmax == 0);
  xmin = at::where(both_zero, at::full_like(xmin, -1.0), xmin);
  xmax = at::where(both_zero, at::full_like(xmax, 1.0), xmax);
  QuantGrid g;
  g.scale = (xmax - xmin) / maxq;
  g.zero = sym ? at::full_like(g.scale, (maxq + 1) / 2) : at::round(-xmin / g.scale);
  return g;
}

at::Tensor grid_codes(const at::Tensor& w, const QuantGrid& g, int64_t bits) {
  const double maxq = static_cast<double>((int64_t{1} << bits) - 1);
  return at::clamp(at::round(w.to(c10::kFloat) / g.scale.unsqueeze(1)) + g.zero.unsqueeze(1), 0, maxq).to(c10::kLong);
}

at::Tensor grid_values(const at::Tensor& codes, const QuantGrid& g) {
  return g.scale.unsqueeze(1) * (codes.to(c10::kFloat) - g.zero.unsqueeze(1));
}

std::unique_ptr<PackedWeight> quantize_rtn_gptq(const at::Tensor& weight, const GptqOptions& o) {
  const int64_t out = weight.size(0), in = weight.size(1);
  check_packable(o.bits, o.group_size, out, in);
  const int64_t gs = o.group_size == -1 ? in : o.group_size;
  const int64_t groups = in / gs;
  at::Tensor wg = weight.detach().to(c10::kCPU, c10::kFloat).reshape({out, groups, gs}).transpose(0, 1);  // [groups, out, gs]
  std::vector<at::Tensor> codes, scales, zeros;
  for (int64_t g = 0; g < groups; ++g) {
    at::Tensor block = wg.select(0, g);
    const QuantGrid grid = gptq_grid(block, o.bits, o.sym);
    codes.push_back(grid_codes(block, grid, o.bits));
    scales.push_back(grid.scale);
    zeros.push_back(grid.zero);
  }
  at::Tensor g_idx = at::arange(in, at::TensorOptions().dtype(c10::kLong)).div(gs, "floor");
  GptqOptions packed = o;
  packed.group_size = gs;
  return pack_gptq(at::cat(codes, 1), at::stack(scales), o.sym ? at::Tensor() : at::stack(zeros), g_idx, packed);
}

}  // namespace llmc::model
