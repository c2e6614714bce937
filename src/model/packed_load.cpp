// Recognizes packed weights in a checkpoint by their keys (docs/formats.md §5, §6).
#include <ATen/ops/tensor.h>
#include <nlohmann/json.hpp>
#include <numeric>

#include "llmc/core/error.h"
#include "llmc/io/json_fields.h"
#include "llmc/io/state_dict.h"
#include "packed_formats.h"

namespace llmc::model {

namespace {

void expect_numel(const at::Tensor& t, int64_t n, const std::string& name) {
  if (t.numel() != n) {
    throw InputError("tensor '" + name + "' has " + std::to_string(t.numel()) + " elements " + io::shape_string(t.sizes()) +
                     ", expected " + std::to_string(n));
  }
}

void expect_dtype(const at::Tensor& t, c10::ScalarType want, const std::string& name) {
  if (t.scalar_type() != want) {
    throw InputError("tensor '" + name + "' has dtype " + std::string(c10::toString(t.scalar_type())) + ", expected " +
                     c10::toString(want));
  }
}

std::unique_ptr<PackedWeight> load_bnb4(const std::string& p, const std::string& type,
                                        const std::function<bool(const std::string&)>& has,
                                        const std::function<at::Tensor(const std::string&)>& take, int64_t out,
                                        int64_t in) {
  const std::string state_name = p + "weight.quant_state.bitsandbytes__" + type;
  at::Tensor state = take(state_name).to(c10::kCPU).contiguous();
  expect_dtype(state, c10::kByte, state_name);
  const std::string text(reinterpret_cast<const char*>(state.data_ptr<uint8_t>()), static_cast<size_t>(state.numel()));
  const std::string where = "tensor '" + state_name + "'";
  const nlohmann::json j = io::parse_json(text, where);
  auto w = std::make_unique<Bnb4Weight>();
  w->quant_type = io::json_required<std::string>(j, "quant_type", where);
  w->blocksize = io::json_required<int64_t>(j, "blocksize", where);
  w->dtype = io::json_field<std::string>(j, "dtype", "float16", where);
  const auto shape = io::json_required<std::vector<int64_t>>(j, "shape", where);
  if (shape != std::vector<int64_t>{out, in}) {
    throw InputError(where + " describes shape " + (shape.size() <= 8 ? io::shape_string(shape) : std::string("of ") +
                     std::to_string(shape.size()) + " dims") + ", expected " + io::shape_string({out, in}) + " from config.json");
  }
  w->nested = j.contains("nested_offset");
  if (w->nested) w->nested_offset = static_cast<float>(io::json_required<double>(j, "nested_offset", where));
  if (w->quant_type != type) throw InputError("tensor '" + state_name + "' says quant_type '" + w->quant_type + "'");
  if (w->blocksize < 32 || w->blocksize > 4096 || (w->blocksize & (w->blocksize - 1)) != 0) {
    throw InputError("tensor '" + state_name + "': unsupported blocksize " + std::to_string(w->blocksize));
  }
  w->out = out;
  w->in = in;
  const int64_t n = out * in;
  const int64_t nb = (n + w->blocksize - 1) / w->blocksize;
  // bnb_4bit_quant_storage may be another dtype: the bytes are what count.
  at::Tensor packed = take(p + "weight").contiguous();
  if (packed.dim() == 0) packed = packed.reshape({1});  // a 0-d tensor cannot be viewed as bytes
  if (packed.scalar_type() != c10::kByte) packed = packed.reshape({-1}).view(c10::kByte);
  expect_numel(packed, (n + 1) / 2, p + "weight");
  w->packed = packed.reshape({-1, 1});
  at::Tensor absmax = take(p + "weight.absmax").contiguous();
  expect_numel(absmax, nb, p + "weight.absmax");
  if (has(p + "weight.quant_map")) expect_numel(take(p + "weight.quant_map"), 16, p + "weight.quant_map");
  if (w->nested) {
    expect_dtype(absmax, c10::kByte, p + "weight.absmax");
    w->qabsmax = absmax;
    w->nested_absmax = take(p + "weight.nested_absmax").to(c10::kFloat).contiguous();
    expect_numel(w->nested_absmax, (nb + 255) / 256, p + "weight.nested_absmax");
    w->nested_quant_map = take(p + "weight.nested_quant_map").to(c10::kFloat).contiguous();
    expect_numel(w->nested_quant_map, 256, p + "weight.nested_quant_map");
  } else {
    w->absmax = absmax.to(c10::kFloat);
  }
  return w;
}

std::unique_ptr<PackedWeight> load_awq(const std::string& p, const std::function<at::Tensor(const std::string&)>& take,
                                       int64_t out, int64_t in) {
  auto w = std::make_unique<AwqWeight>();
  w->out = out;
  w->in = in;
  w->qweight = take(p + "qweight").to(c10::kCPU).contiguous();
  w->qzeros = take(p + "qzeros").to(c10::kCPU).contiguous();
  w->scales = take(p + "scales").to(c10::kCPU).contiguous();
  expect_dtype(w->qweight, c10::kInt, p + "qweight");
  expect_dtype(w->qzeros, c10::kInt, p + "qzeros");
  expect_dtype(w->scales, c10::kHalf, p + "scales");
  if (out % 8 != 0 || w->qweight.sizes() != at::IntArrayRef({in, out / 8})) {
    throw InputError("tensor '" + p + "qweight' has shape " + io::shape_string(w->qweight.sizes()) + ", expected [" +
                     std::to_string(in) + ", " + std::to_string(out) + "/8] (AWQ GEMM)");
  }
  if (w->scales.dim() != 2 || w->scales.size(1) != out || w->scales.size(0) == 0 || in % w->scales.size(0) != 0) {
    throw InputError("tensor '" + p + "scales' has shape " + io::shape_string(w->scales.sizes()));
  }
  w->group_size = in / w->scales.size(0);
  if (w->qzeros.sizes() != at::IntArrayRef({w->scales.size(0), out / 8})) {
    throw InputError("tensor '" + p + "qzeros' has shape " + io::shape_string(w->qzeros.sizes()) + ", expected " +
                     io::shape_string({w->scales.size(0), out / 8}));
  }
  return w;
}

}  // namespace

PackedLayout packed_layout(const nlohmann::json& config, const std::string& where) {
  PackedLayout l;
  if (!config.is_object() || !config.contains("quantization_config")) return l;
  const auto qc = io::json_field<nlohmann::json>(config, "quantization_config", nlohmann::json::object(), where);
  if (!qc.is_object()) throw InputError(where + ": quantization_config must be an object");
  l.quant_method = io::json_field<std::string>(qc, "quant_method", "", where, "quantization_config");
  // GPTQModel writes both names; optimum's older key is checkpoint_format, its newer one format.
  l.checkpoint_format = io::json_field<std::string>(qc, "checkpoint_format", "", where, "quantization_config");
  if (l.checkpoint_format.empty()) l.checkpoint_format = io::json_field<std::string>(qc, "format", "gptq", where, "quantization_config");
  if (l.quant_method == "gptq" && l.checkpoint_format != "gptq" && l.checkpoint_format != "gptq_v2") {
    throw InputError(where + ": quantization_config.checkpoint_format '" + l.checkpoint_format.substr(0, 40) +
                     "' is not supported (gptq or gptq_v2)");
  }
  if (l.quant_method == "awq") {
    const std::string version = io::json_field<std::string>(qc, "version", "gemm", where, "quantization_config");
    const int64_t bits = io::json_field<int64_t>(qc, "bits", 4, where, "quantization_config");
    if ((version != "gemm" && version != "GEMM") || bits != 4) {
      throw InputError(where + ": AWQ version '" + version.substr(0, 40) + "' with " + std::to_string(bits) +
                       " bits is not supported (4-bit gemm)");
    }
  }
  return l;
}

std::unique_ptr<PackedWeight> load_packed_weight(const std::string& p, const std::function<bool(const std::string&)>& has,
                                                 const std::function<at::Tensor(const std::string&)>& take,
                                                 int64_t out, int64_t in, const PackedLayout& layout) {
  for (const char* type : {"nf4", "fp4"}) {
    if (has(p + "weight.quant_state.bitsandbytes__" + type)) return load_bnb4(p, type, has, take, out, in);
  }
  if (has(p + "SCB")) {
    auto w = std::make_unique<Int8Weight>();
    w->out = out;
    w->in = in;
    w->cb = take(p + "weight").contiguous();
    expect_dtype(w->cb, c10::kChar, p + "weight");
    if (w->cb.sizes() != at::IntArrayRef({out, in})) {
      throw InputError("tensor '" + p + "weight' has shape " + io::shape_string(w->cb.sizes()) + ", expected " + io::shape_string({out, in}));
    }
    w->scb = take(p + "SCB").to(c10::kFloat).contiguous();
    expect_numel(w->scb, out, p + "SCB");
    if (has(p + "weight_format")) {
      at::Tensor fmt = take(p + "weight_format");
      if (fmt.numel() != 1 || fmt.to(c10::kCPU).to(c10::kLong).item<int64_t>() != 0) {
        throw InputError("tensor '" + p + "weight_format': only the row format (0) is supported");
      }
    }
    return w;
  }
  if (has(p + "qweight") && layout.quant_method == "awq") return load_awq(p, take, out, in);
  if (has(p + "qweight")) {
    auto w = std::make_unique<GptqWeight>();
    w->v2 = layout.checkpoint_format == "gptq_v2";
    w->sym = !w->v2;
    w->out = out;
    w->in = in;
    w->qweight = take(p + "qweight").contiguous();
    w->qzeros = take(p + "qzeros").contiguous();
    w->scales = take(p + "scales").contiguous();
    w->g_idx = has(p + "g_idx") ? take(p + "g_idx").to(c10::kInt).contiguous() : at::Tensor();
    expect_dtype(w->qweight, c10::kInt, p + "qweight");
    expect_dtype(w->qzeros, c10::kInt, p + "qzeros");
    if (w->qweight.dim() != 2 || w->qweight.size(1) != out || (w->qweight.size(0) * 32) % in != 0) {
      throw InputError("tensor '" + p + "qweight' has shape " + io::shape_string(w->qweight.sizes()) + ", expected [in*bits/32, " +
                       std::to_string(out) + "]");
    }
    w->bits = w->qweight.size(0) * 32 / in;
    if (w->bits != 2 && w->bits != 3 && w->bits != 4 && w->bits != 8) {
      throw InputError("tensor '" + p + "qweight' implies " + std::to_string(w->bits) + "-bit codes (2, 3, 4 or 8 supported)");
    }
    if (w->scales.dim() != 2 || w->scales.size(1) != out || w->scales.size(0) == 0 || in % w->scales.size(0) != 0) {
      throw InputError("tensor '" + p + "scales' has shape " + io::shape_string(w->scales.sizes()));
    }
    w->group_size = in / w->scales.size(0);
    if (!w->g_idx.defined()) {
      std::vector<int32_t> g(static_cast<size_t>(in));
      for (int64_t i = 0; i < in; ++i) g[static_cast<size_t>(i)] = static_cast<int32_t>(i / w->group_size);
      w->g_idx = at::tensor(g).to(w->qweight.device());
    }
    expect_numel(w->g_idx, in, p + "g_idx");
    if (w->g_idx.min().item<int64_t>() < 0 || w->g_idx.max().item<int64_t>() >= w->scales.size(0)) {
      throw InputError("tensor '" + p + "g_idx' points outside the " + std::to_string(w->scales.size(0)) + " groups");
    }
    const int64_t group = 32 / std::gcd<int64_t>(32, w->bits);
    if (w->qzeros.dim() != 2 || w->qzeros.size(0) != w->scales.size(0) || w->qzeros.size(1) != out / group * (group * w->bits / 32)) {
      throw InputError("tensor '" + p + "qzeros' has shape " + io::shape_string(w->qzeros.sizes()));
    }
    return w;
  }
  return nullptr;
}

}  // namespace llmc::model
