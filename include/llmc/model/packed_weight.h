// Packed (quantized) linear weights as Hugging Face stores them, and the products that use
// them without materializing a full dequantized copy. docs/formats.md §5 (bitsandbytes 4-bit and
// LLM.int8) and §6.1 (GPTQ v1 layout). The model's Linear holds one of these or a dense
// tensor; quant (which computes them) and prune (which re-quantizes) build on this.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
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
  virtual std::string format() const = 0;  // "nf4", "fp4", "int8", "gptq"
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

// ---- GPTQ v1 layout with symmetric round-to-nearest codes, docs/formats.md §6

struct GptqOptions {
  int64_t bits{4};          // 2, 3, 4 or 8
  int64_t group_size{128};  // -1 = one group per row
};

// Plain symmetric RTN (the GPTQ quantizer with sym=True, no error feedback).
std::unique_ptr<PackedWeight> quantize_rtn_gptq(const at::Tensor& weight, const GptqOptions& options);
// Packs codes q [out, in] (0..2^bits-1) with per-group scales [groups, out] and symmetric zero.
std::unique_ptr<PackedWeight> pack_gptq(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& g_idx,
                                        const GptqOptions& options);

// ---- loading: which packed form (if any) the checkpoint holds under `prefix`

// Returns null when `prefix + "weight"` is a plain dense weight. `take(name)` returns the
// named tensor (InputError when absent). `has(name)` tells whether it exists. Throws
// InputError (naming the tensor) on malformed packed data.
std::unique_ptr<PackedWeight> load_packed_weight(const std::string& prefix,
                                                 const std::function<bool(const std::string&)>& has,
                                                 const std::function<at::Tensor(const std::string&)>& take,
                                                 int64_t out_features, int64_t in_features);

}  // namespace llmc::model
