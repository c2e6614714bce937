// Private: the concrete packed-weight classes.
#pragma once

#include "llmc/model/packed_weight.h"

namespace llmc::model {

class Bnb4Weight : public PackedWeight {
 public:
  std::string format() const override { return quant_type; }
  int64_t out_features() const override { return out; }
  int64_t in_features() const override { return in; }
  at::Tensor matmul(const at::Tensor& x) const override;
  int64_t vec_units() const override;
  int64_t vec_scratch_floats() const override;
  void vec_prepare(const float* x, float* scratch) const override;
  void vec_compute(const float* x, const float* scratch, int64_t unit_begin, int64_t unit_end, float* y) const override;
  at::Tensor dequantize() const override;
  int64_t nbytes() const override;
  NamedTensors state_dict(const std::string& prefix) const override;
  std::unique_ptr<PackedWeight> requantize(const at::Tensor& weight) const override;
  at::Tensor resolved_absmax() const;  // float32 [nblocks], computed once for nested absmax

  std::string quant_type;
  int64_t blocksize{64};
  std::string dtype{"float16"};
  int64_t out{0}, in{0};
  at::Tensor packed;  // uint8 [(n+1)/2, 1]
  at::Tensor absmax;  // float32 [nblocks], when not nested
  bool nested{false};
  at::Tensor qabsmax;           // uint8 [nblocks]
  at::Tensor nested_absmax;     // float32 [ceil(nblocks/256)]
  at::Tensor nested_quant_map;  // float32 [256]
  float nested_offset{0.0f};

 private:
  mutable at::Tensor absmax_cache_;  // resolved nested absmax (float32), kept for the kernels
  mutable at::Tensor vec_absmax_;    // contiguous absmax for vec_compute (set by vec_prepare)
  mutable float vec_lut_[16]{};
};

class Int8Weight : public PackedWeight {
 public:
  std::string format() const override { return "int8"; }
  int64_t out_features() const override { return out; }
  int64_t in_features() const override { return in; }
  at::Tensor matmul(const at::Tensor& x) const override;
  int64_t vec_units() const override;
  int64_t vec_scratch_floats() const override;
  void vec_prepare(const float* x, float* scratch) const override;
  void vec_compute(const float* x, const float* scratch, int64_t unit_begin, int64_t unit_end, float* y) const override;
  at::Tensor dequantize() const override;
  int64_t nbytes() const override { return cb.numel() + scb.numel() * 4; }
  NamedTensors state_dict(const std::string& prefix) const override;
  std::unique_ptr<PackedWeight> requantize(const at::Tensor& weight) const override { return quantize_int8(weight); }

  int64_t out{0}, in{0};
  at::Tensor cb;   // int8 [out, in]
  at::Tensor scb;  // float32 [out]

 private:
  mutable at::Tensor vec_scale_;  // scb / 127, set by vec_prepare
};

class GptqWeight : public PackedWeight {
 public:
  std::string format() const override { return "gptq"; }
  std::string checkpoint_format() const override { return v2 ? "gptq_v2" : "gptq"; }
  int64_t out_features() const override { return out; }
  int64_t in_features() const override { return in; }
  at::Tensor matmul(const at::Tensor& x) const override;
  int64_t vec_units() const override;
  int64_t vec_scratch_floats() const override;
  void vec_prepare(const float* x, float* scratch) const override;
  void vec_compute(const float* x, const float* scratch, int64_t unit_begin, int64_t unit_end, float* y) const override;
  at::Tensor dequantize() const override;
  int64_t nbytes() const override { return qweight.numel() * 4 + qzeros.numel() * 4 + scales.numel() * 2 + g_idx.numel() * 4; }
  NamedTensors state_dict(const std::string& prefix) const override;
  // RTN with the same bits, group size and symmetry (contiguous groups).
  std::unique_ptr<PackedWeight> requantize(const at::Tensor& weight) const override {
    return quantize_rtn_gptq(weight, {bits, group_size == in ? -1 : group_size, sym});
  }
  at::Tensor codes() const;  // int64 [in, out], unpacked
  at::Tensor zeros() const;  // int64 [groups, out], the zero points (v1's stored value + 1)

  int64_t bits{4}, group_size{128};
  int64_t out{0}, in{0};
  bool v2{false};      // zero points stored as they are (gptq_v2) instead of minus one (v1)
  bool sym{true};      // how requantize() fits new weights
  at::Tensor qweight;  // int32 [in*bits/32, out]
  at::Tensor qzeros;   // int32 [groups, out*bits/32]
  at::Tensor scales;   // float16 [groups, out]
  at::Tensor g_idx;    // int32 [in]

 private:
  // Set by vec_prepare: float32 scales and zero points [groups, out], and whether g_idx is
  // i / group_size (groups of consecutive inputs, summed before scaling).
  mutable at::Tensor vec_scales_, vec_zeros_, vec_gidx_;
  mutable bool vec_consecutive_{false};
};

class AwqWeight : public PackedWeight {
 public:
  std::string format() const override { return "awq"; }
  int64_t out_features() const override { return out; }
  int64_t in_features() const override { return in; }
  at::Tensor matmul(const at::Tensor& x) const override;
  int64_t vec_units() const override;
  int64_t vec_scratch_floats() const override;
  void vec_prepare(const float* x, float* scratch) const override;
  void vec_compute(const float* x, const float* scratch, int64_t unit_begin, int64_t unit_end, float* y) const override;
  at::Tensor dequantize() const override;
  int64_t nbytes() const override { return qweight.numel() * 4 + qzeros.numel() * 4 + scales.numel() * 2; }
  NamedTensors state_dict(const std::string& prefix) const override;
  std::unique_ptr<PackedWeight> requantize(const at::Tensor& weight) const override {
    return quantize_awq_rtn(weight, group_size);
  }
  // Rows [r0, r1) of the float32 weight [out, in] into dst (the scalar reference the products use).
  void dequantize_rows(int64_t r0, int64_t r1, float* dst) const;

  int64_t group_size{128};
  int64_t out{0}, in{0};
  at::Tensor qweight;  // int32 [in, out/8]
  at::Tensor qzeros;   // int32 [in/group, out/8]
  at::Tensor scales;   // float16 [in/group, out]
};

}  // namespace llmc::model
