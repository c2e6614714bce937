// Private: the CPU decode path. One token of one sequence (batch 1, float32 compute, no
// padding) through raw kernels instead of LibTorch ops: the KV cache grows in place
// (KVCache::key_store), attention for the one query runs over the cache in one threaded
// kernel, every Linear is a matrix-vector product at memory speed (dense float32 / float16
// rows, or the packed formats' vec_* products), and the jobs run on a spinning ThreadTeam.
// The pieces (VecLinear, layer_norm_row, attend_one) are family-neutral; OptFastDecoder is
// OPT's layer order on them. Anything it does not cover (batches, padding, training, CUDA,
// a weight without a vec product) stays on the modules' path.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "llmc/model/causal_lm.h"
#include "llmc/model/opt_config.h"
#include "llmc/model/packed_weight.h"

namespace llmc::model {

class OptForCausalLMImpl;

// False when LLMC_FAST_DECODE=0 (the modules' path everywhere: for comparisons).
bool fast_decode_enabled();

// y = W x + b for one float32 row: W dense (float32 or float16 rows) or packed.
struct VecLinear {
  at::Tensor weight, bias;  // held, so the pointers below stay valid
  std::shared_ptr<PackedWeight> packed;
  const float* w32{nullptr};
  const uint16_t* w16{nullptr};
  const float* b{nullptr};
  int64_t out{0}, in{0}, units{0}, rows_per_unit{1};
  std::vector<float> scratch;
};

class OptFastDecoder {
 public:
  // Null when a weight or setting has no fast path.
  static std::unique_ptr<OptFastDecoder> build(OptForCausalLMImpl& model, const OptConfig& config);
  // Whether `cache` (past positions) can be continued by step(): batch 1, float32, this
  // model's heads.
  bool accepts(const KVCache& cache, int64_t past) const;
  // Logits [1, 1, vocab] of `token` at position `past`; appends its keys and values to cache.
  // One step at a time per decoder (its buffers are its own); decoders of several models may
  // step from several threads (they take turns on the thread team).
  at::Tensor step(int64_t token, int64_t past, KVCache& cache);

  struct Layer {
    VecLinear q, k, v, o, fc1, fc2;
    const float *ln1_w{nullptr}, *ln1_b{nullptr}, *ln2_w{nullptr}, *ln2_b{nullptr};
  };

 private:
  OptConfig c_;
  at::Tensor embed_, positions_;
  std::vector<at::Tensor> held_;  // LayerNorm parameters behind the raw pointers
  const float* final_w_{nullptr};
  const float* final_b_{nullptr};
  bool has_final_ln_{false};
  VecLinear project_in_, project_out_, lm_head_;
  bool has_projections_{false};
  std::vector<Layer> layers_;
  void (*attend_)(const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*,
                  float*){nullptr};
  // Per-step buffers.
  std::vector<float> x_, h_, q_, k_, v_, a_, o_, f_, e_, scores_;
};

}  // namespace llmc::model
