// bitsandbytes formats: blockwise 4-bit NF4/FP4 with optional double quantization, and
// LLM.int8 row-wise absmax. docs/formats.md §5.
#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/bucketize.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linspace.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/round.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kernels/kernels.h"
#include "llmc/core/error.h"
#include "packed_common.h"
#include "packed_formats.h"

namespace llmc::model {

namespace {

const std::vector<float> kNf4 = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                 -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                                 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                                 0.7229568362236023f, 1.0f};
// FP4: raw [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3] / 12.
const std::vector<float> kFp4 = [] {
  const float raw[16] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f,
                         -0.0f, -0.0625f, -8.0f, -12.0f, -4.0f, -6.0f, -2.0f, -3.0f};
  std::vector<float> t(16);
  for (int i = 0; i < 16; ++i) t[static_cast<size_t>(i)] = raw[i] / 12.0f;
  return t;
}();

at::Tensor f32(const std::vector<float>& v) { return at::tensor(v, at::TensorOptions().dtype(c10::kFloat)); }

// Nearest entry of a sorted table, ties to the lower index (bucketize over midpoints).
at::Tensor nearest_sorted(const at::Tensor& x, const at::Tensor& sorted) {
  const int64_t n = sorted.numel();
  at::Tensor mid = (sorted.slice(0, 0, n - 1) + sorted.slice(0, 1, n)) / 2;
  return at::bucketize(x, mid);
}

// FP4 as the CUDA kernel does it: sign bit iff x < 0, magnitude by thresholds with strict >.
at::Tensor fp4_codes(const at::Tensor& x) {
  // magnitude codes in increasing value order: 0, 1/192, 1/6, 1/4, 1/3, 1/2, 2/3, 1
  const at::Tensor mags = at::tensor(std::vector<int64_t>{0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011});
  const at::Tensor thresholds = f32({0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f, 0.4166667f, 0.583333f, 0.8333333f});
  at::Tensor rank = at::bucketize(x.abs(), thresholds);  // |x| == threshold stays below
  at::Tensor code = mags.index_select(0, rank.reshape(-1)).reshape(x.sizes());
  return code + (x < 0).to(c10::kLong) * 8;
}

std::string quant_state_json(const Bnb4Weight& w) {
  using nlohmann::json;
  // Python json.dumps separators, bitsandbytes' key order (QuantState.as_dict(packed=True)).
  std::string s = "{\"quant_type\": " + json(w.quant_type).dump() + ", \"blocksize\": " + std::to_string(w.blocksize) +
                  ", \"dtype\": " + json(w.dtype).dump() + ", \"shape\": [" + std::to_string(w.out) + ", " +
                  std::to_string(w.in) + "]";
  if (w.nested) {
    s += ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": " + json(w.nested_offset).dump();
  }
  return s + "}";
}

}  // namespace

std::vector<float> bnb4_code_table(const std::string& quant_type) {
  if (quant_type == "nf4") return kNf4;
  if (quant_type == "fp4") return kFp4;
  throw UsageError("--bnb_4bit_quant_type: expected nf4 or fp4, found '" + quant_type + "'");
}

at::Tensor bnb_dynamic_map() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for i = 0..6,
  // 10^(i-6) * midpoints of linspace(0.1, 1, 2^i + 1), and their negatives; plus 0 and 1.
  std::vector<at::Tensor> parts;
  for (int i = 0; i < 7; ++i) {
    at::Tensor b = at::linspace(0.1, 1.0, (1 << i) + 1, at::TensorOptions().dtype(c10::kFloat));
    at::Tensor means = (b.slice(0, 0, b.numel() - 1) + b.slice(0, 1, b.numel())) / 2.0;
    at::Tensor v = means * std::pow(10.0, i - 6);
    parts.push_back(v);
    parts.push_back(-v);
  }
  parts.push_back(f32({0.0f, 1.0f}));
  return std::get<0>(at::cat(parts).sort());
}

at::Tensor Bnb4Weight::resolved_absmax() const {
  if (!nested) return absmax;
  if (absmax_cache_.defined()) return absmax_cache_;
  const int64_t nb = qabsmax.numel();
  at::Tensor vals = nested_quant_map.index_select(0, qabsmax.to(c10::kLong));
  at::Tensor scale = nested_absmax.repeat_interleave(256).slice(0, 0, nb);
  absmax_cache_ = (vals * scale + static_cast<float>(nested_offset)).contiguous();
  return absmax_cache_;
}

at::Tensor Bnb4Weight::dequantize() const {
  if (packed.device().is_cpu()) {
    at::Tensor result = at::empty({out, in}, at::TensorOptions().dtype(c10::kFloat));
    const at::Tensor am = resolved_absmax().contiguous();
    const std::vector<float> lut = bnb4_code_table(quant_type);
    const auto& k = kernels::best_kernels();
    float* dst = result.data_ptr<float>();
    parallel_rows(out, [&](int64_t a, int64_t b) {
      k.dequant4(packed.data_ptr<uint8_t>(), am.data_ptr<float>(), lut.data(), a, b, in, blocksize, dst + a * in);
    });
    return result;
  }
  const int64_t n = out * in;
  at::Tensor bytes = packed.reshape(-1).to(c10::kLong);
  at::Tensor codes = at::stack({bytes.__rshift__(4), bytes.bitwise_and(15)}, 1).reshape(-1).slice(0, 0, n);
  at::Tensor lut = f32(bnb4_code_table(quant_type)).to(packed.device());
  at::Tensor scale = resolved_absmax().repeat_interleave(blocksize).slice(0, 0, n);
  return (lut.index_select(0, codes) * scale).reshape({out, in});
}

at::Tensor Bnb4Weight::matmul(const at::Tensor& x) const {
  if (!packed.device().is_cpu()) return at::matmul(x, dequantize().to(x.scalar_type()).t());
  FlatInput f = flatten_input(x, in, out);
  at::Tensor y;
  if (f.x2.size(0) <= 4 && vec_units() > 0) {
    y = vec_rows_matmul(*this, f.x2);
  } else {
    const auto& k = kernels::best_kernels();
    const std::vector<float> lut = bnb4_code_table(quant_type);
    const at::Tensor am = resolved_absmax().contiguous();
    const uint8_t* pk = packed.data_ptr<uint8_t>();
    const float* amp = am.data_ptr<float>();
    y = tiled_matmul(f.x2, out, in, [&](int64_t r0, int64_t r1, float* dst) {
      k.dequant4(pk, amp, lut.data(), r0, r1, in, blocksize, dst);
    });
  }
  return y.reshape(f.out_shape).to(x.scalar_type());
}

int64_t Bnb4Weight::vec_units() const {
  return packed.device().is_cpu() && in % blocksize == 0 && in % 2 == 0 && blocksize % 32 == 0 ? out : 0;
}
int64_t Bnb4Weight::vec_scratch_floats() const { return in; }
void Bnb4Weight::vec_prepare(const float* x, float* scratch) const {
  if (!vec_absmax_.defined()) {
    vec_absmax_ = resolved_absmax().contiguous();
    const std::vector<float> lut = bnb4_code_table(quant_type);
    std::copy(lut.begin(), lut.end(), vec_lut_);
  }
  float* xe = scratch;
  float* xo = scratch + in / 2;
  for (int64_t j = 0; j < in / 2; ++j) {
    xe[j] = x[2 * j];
    xo[j] = x[2 * j + 1];
  }
}
void Bnb4Weight::vec_compute(const float*, const float* scratch, int64_t a, int64_t b, float* y) const {
  kernels::best_kernels().dot4(packed.data_ptr<uint8_t>(), vec_absmax_.data_ptr<float>(), vec_lut_, a, b, in, blocksize,
                               scratch, scratch + in / 2, y);
}

int64_t Bnb4Weight::nbytes() const {
  int64_t n = packed.numel() + 16 * 4;
  if (nested) n += qabsmax.numel() + nested_absmax.numel() * 4 + nested_quant_map.numel() * 4 +
                qabsmax.numel() * 4;  // + the float32 absmax the kernels use
  else n += absmax.numel() * 4;
  return n;
}

NamedTensors Bnb4Weight::state_dict(const std::string& prefix) const {
  const std::string p = prefix + "weight";
  NamedTensors out_t;
  out_t.emplace_back(p, packed);
  out_t.emplace_back(p + ".absmax", nested ? qabsmax : absmax);
  out_t.emplace_back(p + ".quant_map", f32(bnb4_code_table(quant_type)));
  if (nested) {
    out_t.emplace_back(p + ".nested_absmax", nested_absmax);
    out_t.emplace_back(p + ".nested_quant_map", nested_quant_map.clone());
  }
  const std::string js = quant_state_json(*this);
  at::Tensor bytes = at::empty({static_cast<int64_t>(js.size())}, at::TensorOptions().dtype(c10::kByte));
  std::copy(js.begin(), js.end(), bytes.data_ptr<uint8_t>());
  out_t.emplace_back(p + ".quant_state.bitsandbytes__" + quant_type, bytes);
  return out_t;
}

std::unique_ptr<PackedWeight> Bnb4Weight::requantize(const at::Tensor& weight) const {
  Bnb4Options o;
  o.quant_type = quant_type;
  o.blocksize = blocksize;
  o.double_quant = nested;
  o.dtype = dtype;
  return quantize_bnb4(weight, o);
}

std::unique_ptr<PackedWeight> quantize_bnb4(const at::Tensor& weight, const Bnb4Options& o) {
  if (o.blocksize < 32 || o.blocksize > 4096 || (o.blocksize & (o.blocksize - 1)) != 0) {
    throw UsageError("--blocksize must be a power of two from 32 to 4096, found " + std::to_string(o.blocksize));
  }
  const std::vector<float> table = bnb4_code_table(o.quant_type);
  if (weight.dim() != 2) throw UsageError("4-bit quantization expects a 2-D weight");
  auto w = std::make_unique<Bnb4Weight>();
  w->quant_type = o.quant_type;
  w->blocksize = o.blocksize;
  w->dtype = o.dtype;
  w->out = weight.size(0);
  w->in = weight.size(1);
  const int64_t n = w->out * w->in;
  const int64_t nb = (n + o.blocksize - 1) / o.blocksize;
  at::Tensor flat = weight.detach().to(c10::kCPU).reshape(-1);
  at::Tensor absmax = at::empty({nb}, at::TensorOptions().dtype(c10::kFloat));
  w->packed = at::empty({(n + 1) / 2, 1}, at::TensorOptions().dtype(c10::kByte));
  const at::Tensor table_t = f32(table);
  // An all-zero block (absmax 0) gives NaN: store the code of 0.
  const int64_t zero_code = o.quant_type == "nf4" ? 7 : 0;
  // Chunks of whole blocks (an even number of elements) bound the temporaries.
  const int64_t chunk_blocks = std::max<int64_t>(2, ((1 << 20) / o.blocksize) / 2 * 2);
  for (int64_t b0 = 0; b0 < nb; b0 += chunk_blocks) {
    const int64_t b1 = std::min(nb, b0 + chunk_blocks);
    const int64_t e0 = b0 * o.blocksize, e1 = std::min(n, b1 * o.blocksize);
    at::Tensor x = flat.slice(0, e0, e1).to(c10::kFloat);
    if (x.numel() != (b1 - b0) * o.blocksize) x = at::cat({x, at::zeros({(b1 - b0) * o.blocksize - x.numel()}, x.options())});
    at::Tensor blocks = x.view({b1 - b0, o.blocksize});
    at::Tensor am = std::get<0>(blocks.abs().max(1));
    absmax.slice(0, b0, b1).copy_(am);
    at::Tensor scaled = at::clamp(blocks * (1.0 / am).unsqueeze(1), -1.0, 1.0);
    at::Tensor codes = o.quant_type == "nf4" ? nearest_sorted(scaled, table_t) : fp4_codes(scaled);
    codes = at::where(scaled.isnan(), at::tensor(zero_code), codes).reshape(-1).slice(0, 0, e1 - e0);
    if (codes.numel() % 2 != 0) codes = at::cat({codes, at::zeros({1}, codes.options())});
    at::Tensor pairs = codes.view({-1, 2});
    w->packed.slice(0, e0 / 2, e0 / 2 + pairs.size(0)).view(-1).copy_(pairs.select(1, 0).__lshift__(4) + pairs.select(1, 1));
  }
  if (o.double_quant) {
    w->nested = true;
    const at::Tensor offset = absmax.mean();
    w->nested_offset = offset.item<float>();
    at::Tensor centered = absmax - offset;
    const int64_t nn = (nb + 255) / 256;
    at::Tensor padded = nn * 256 == nb ? centered : at::cat({centered, at::zeros({nn * 256 - nb}, centered.options())});
    at::Tensor nblocks = padded.view({nn, 256});
    w->nested_absmax = std::get<0>(nblocks.abs().max(1)).contiguous();
    at::Tensor normed = at::clamp(nblocks * (1.0 / w->nested_absmax).unsqueeze(1), -1.0, 1.0);
    w->nested_quant_map = bnb_dynamic_map();
    at::Tensor q = nearest_sorted(normed, w->nested_quant_map);
    const int64_t zero_idx = nearest_sorted(at::zeros({1}), w->nested_quant_map).item<int64_t>();
    q = at::where(normed.isnan(), at::tensor(zero_idx), q);
    w->qabsmax = q.reshape(-1).slice(0, 0, nb).to(c10::kByte).contiguous();
  } else {
    w->absmax = absmax.contiguous();
  }
  return w;
}

// ---------------------------------------------------------------- LLM.int8

at::Tensor Int8Weight::dequantize() const { return cb.to(c10::kFloat) * (scb / 127.0f).unsqueeze(1); }

at::Tensor Int8Weight::matmul(const at::Tensor& x) const {
  if (!cb.device().is_cpu()) return at::matmul(x, dequantize().to(x.scalar_type()).t());
  FlatInput f = flatten_input(x, in, out);
  at::Tensor y;
  if (f.x2.size(0) <= 4) {
    y = vec_rows_matmul(*this, f.x2);
  } else {
    const at::Tensor scale = (scb / 127.0f).contiguous();
    const int8_t* cbp = cb.data_ptr<int8_t>();
    const float* sp = scale.data_ptr<float>();
    y = tiled_matmul(f.x2, out, in, [&](int64_t r0, int64_t r1, float* dst) {
      for (int64_t r = r0; r < r1; ++r) {
        const int8_t* row = cbp + r * in;
        for (int64_t c = 0; c < in; ++c) *dst++ = static_cast<float>(row[c]) * sp[r];
      }
    });
  }
  return y.reshape(f.out_shape).to(x.scalar_type());
}

int64_t Int8Weight::vec_units() const { return cb.device().is_cpu() ? out : 0; }
int64_t Int8Weight::vec_scratch_floats() const { return 0; }
void Int8Weight::vec_prepare(const float*, float*) const {
  if (!vec_scale_.defined()) vec_scale_ = (scb / 127.0f).contiguous();
}
void Int8Weight::vec_compute(const float* x, const float*, int64_t a, int64_t b, float* y) const {
  kernels::best_kernels().dot8(cb.data_ptr<int8_t>(), vec_scale_.data_ptr<float>(), a, b, in, x, y);
}

NamedTensors Int8Weight::state_dict(const std::string& prefix) const {
  return {{prefix + "weight", cb}, {prefix + "SCB", scb},
          {prefix + "weight_format", at::zeros({}, at::TensorOptions().dtype(c10::kByte))}};
}

std::unique_ptr<PackedWeight> quantize_int8(const at::Tensor& weight) {
  if (weight.dim() != 2) throw UsageError("int8 quantization expects a 2-D weight");
  auto w = std::make_unique<Int8Weight>();
  at::Tensor wf = weight.detach().to(c10::kCPU, c10::kFloat);
  w->out = wf.size(0);
  w->in = wf.size(1);
  w->scb = std::get<0>(wf.abs().max(1)).contiguous();
  at::Tensor safe = at::where(w->scb == 0, at::ones_like(w->scb), w->scb);
  w->cb = at::round(wf * 127.0f / safe.unsqueeze(1)).clamp(-127, 127).to(c10::kChar).contiguous();
  return w;
}

}  // namespace llmc::model
