// Packed (quantized) linear weights as Hugging Face stores them, and the products that use
// them without materializing a full dequantized copy. docs/formats.md §5 (bitsandbytes 4-bit and
// LLM.int8) and §6.1 (GPTQ v1 layout). The model's Linear holds one of these or a dense
// tensor; quant (which computes them) and prune (which re-quantizes) build on this.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llmc::model {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

class PackedWeight {
 public:
  virtual ~PackedWeight() = default;
  virtual std::string format() const = 0;  // "nf4", "fp4", "int8", "gptq", "awq"
  // How the tensors are laid out where a format has variants: "gptq" (v1) or "gptq_v2".
  virtual std::string checkpoint_format() const { return format(); }
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  // y = x W^T for x [..., in] (any float dtype); returns x's dtype. On the CPU the weight is
  // dequantized block by block inside the product, never as a whole.
  virtual at::Tensor matmul(const at::Tensor& x) const = 0;
  // The full float32 weight [out, in] (for tests, prune and error measurement).
  virtual at::Tensor dequantize() const = 0;
  // Bytes of the packed tensors as held in memory.
  virtual int64_t nbytes() const = 0;
  // The tensors a Hugging Face checkpoint holds for this weight under `prefix` (e.g.
  // "model.decoder.layers.0.fc1."), bias excluded.
  virtual NamedTensors state_dict(const std::string& prefix) const = 0;
  // Packs `weight` (float [out, in]) with this weight's settings (format, block/group size,
  // double quantization): what prune uses to edit a quantized model.
  virtual std::unique_ptr<PackedWeight> requantize(const at::Tensor& weight) const = 0;
  // ---- One input row on the CPU (the decode path, src/model/fast_decode.cpp): y = W x for
  // float32 x [in] into y [out], in vec_units() independent pieces the caller spreads over
  // threads, after vec_prepare() has filled vec_scratch_floats() floats from x once.
  // vec_units() == 0: this weight has no such product (the caller uses matmul()).
  virtual int64_t vec_units() const { return 0; }
  virtual int64_t vec_scratch_floats() const { return 0; }
  virtual void vec_prepare(const float* /*x*/, float* /*scratch*/) const {}
  virtual void vec_compute(const float* /*x*/, const float* /*scratch*/, int64_t /*unit_begin*/, int64_t /*unit_end*/,
                           float* /*y*/) const {}
  // Bits per weight of the packed form (codes plus scales), for metrics.
  double bits_per_weight() const { return 8.0 * static_cast<double>(nbytes()) / static_cast<double>(out_features() * in_features()); }
};

// ---- bitsandbytes 4-bit (NF4 / FP4), docs/formats.md §5.1

struct Bnb4Options {
  std::string quant_type{"nf4"};  // nf4 | fp4
  int64_t blocksize{64};          // power of two, 32..4096
  bool double_quant{true};        // compress_statistics
  std::string dtype{"float16"};   // the quant_state "dtype" (the unquantized weights' dtype)
};

// The 16-entry code table (index -> value) of quant_type; UsageError for other names.
std::vector<float> bnb4_code_table(const std::string& quant_type);
// bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(True, 7, 8)): 256 sorted floats.
at::Tensor bnb_dynamic_map();

std::unique_ptr<PackedWeight> quantize_bnb4(const at::Tensor& weight, const Bnb4Options& options);

// ---- LLM.int8 row-wise absmax, docs/formats.md §5.2

std::unique_ptr<PackedWeight> quantize_int8(const at::Tensor& weight);

// ---- GPTQ layout, docs/formats.md §6: v1 (zero points stored minus one; symmetric) and
// gptq_v2 (zero points as they are; what asymmetric codes need)

struct GptqOptions {
  int64_t bits{4};          // 2, 3, 4 or 8
  int64_t group_size{128};  // -1 = one group per row
  bool sym{true};           // false: asymmetric zero points, packed in the gptq_v2 layout
};

// A quantizer's per-row grid: scale and integer zero point (float32 [rows] each).
struct QuantGrid {
  at::Tensor scale;
  at::Tensor zero;
};
// GPTQ's quantizer (docs/formats.md §6.3) fitted to each row of w [rows, cols]: the range
// includes 0; symmetric puts the zero at 2^(b-1); an all-zero row gets [-1, 1].
QuantGrid gptq_grid(const at::Tensor& w, int64_t bits, bool sym);
// clamp(round(w / scale) + zero, 0, 2^bits - 1) per row (round half to even), int64.
at::Tensor grid_codes(const at::Tensor& w, const QuantGrid& grid, int64_t bits);
// scale * (codes - zero): the value a code stands for.
at::Tensor grid_values(const at::Tensor& codes, const QuantGrid& grid);

// Plain round-to-nearest with GPTQ's quantizer per group (no error feedback).
std::unique_ptr<PackedWeight> quantize_rtn_gptq(const at::Tensor& weight, const GptqOptions& options);
// Packs codes [out, in] (0..2^bits-1) with per-group scales and zero points [groups, out]
// (zeros undefined: the symmetric 2^(bits-1)); g_idx [in] gives each input column's group.
std::unique_ptr<PackedWeight> pack_gptq(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& zeros,
                                        const at::Tensor& g_idx, const GptqOptions& options);

// ---- AutoAWQ GEMM layout (4-bit, asymmetric, qweight [in, out/8] in the 0,2,4,6,1,3,5,7
// nibble order; docs/formats.md §7)

// AWQ's quantizer fitted to each row of w [rows, cols]: the group's own min and max (not
// forced to include 0), scale = max(max - min, 1e-5) / 15, zero = clamp(-round(min/scale), 0, 15).
QuantGrid awq_grid(const at::Tensor& w);
// Round-to-nearest with AWQ's quantizer per group of `group_size` input columns.
std::unique_ptr<PackedWeight> quantize_awq_rtn(const at::Tensor& weight, int64_t group_size);
// Packs codes [out, in] (0..15) with scales and zero points [groups, out].
std::unique_ptr<PackedWeight> pack_awq(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& zeros,
                                       int64_t group_size);

// ---- loading: which packed form (if any) the checkpoint holds under `prefix`

// What config.json's quantization_config says about the packed tensors' layout.
struct PackedLayout {
  std::string quant_method;                 // "gptq", "awq", "bitsandbytes" or empty
  std::string checkpoint_format{"gptq"};  // gptq: "gptq" (v1) or "gptq_v2"
};
// From config.json (an object); InputError for a quantization_config of the wrong type.
PackedLayout packed_layout(const nlohmann::json& config, const std::string& where);

// Returns null when `prefix + "weight"` is a plain dense weight. `take(name)` returns the
// named tensor (InputError when absent). `has(name)` tells whether it exists. Throws
// InputError (naming the tensor) on malformed packed data.
std::unique_ptr<PackedWeight> load_packed_weight(const std::string& prefix,
                                                 const std::function<bool(const std::string&)>& has,
                                                 const std::function<at::Tensor(const std::string&)>& take,
                                                 int64_t out_features, int64_t in_features,
                                                 const PackedLayout& layout = {});

}  // namespace llmc::model
