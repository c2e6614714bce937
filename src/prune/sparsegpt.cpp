#include "sparsegpt.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>

#include <cmath>

#include "llmc/calib/obs.h"
#include "llmc/core/error.h"

namespace llmc::prune {

SparseGptResult sparsegpt_prune(const at::Tensor& weight, const at::Tensor& hessian, const SparseGptSettings& s) {
  at::Tensor W = weight.to(c10::kCPU, c10::kFloat).clone();
  at::Tensor H = hessian.to(c10::kCPU, c10::kFloat).clone();
  const int64_t rows = W.size(0), cols = W.size(1);
  const bool nm = s.group_m > 0;
  if (nm && (cols % s.group_m != 0 || s.block_size % s.group_m != 0)) {
    throw UsageError("N:M pattern with M=" + std::to_string(s.group_m) + " needs input widths divisible by M (found " +
                     std::to_string(cols) + ")");
  }
  SparseGptResult r;
  r.dead_inputs = calib::zero_dead_inputs(H, W);
  const calib::InverseFactor inv = calib::inverse_factor(H, s.damp_percent);
  r.damp_used = inv.damp_used;
  r.damp_retries = inv.retries;
  const at::Tensor& Hinv = inv.upper;
  for (int64_t i1 = 0; i1 < cols; i1 += s.block_size) {
    const int64_t i2 = std::min(i1 + s.block_size, cols), count = i2 - i1;
    at::Tensor W1 = W.narrow(1, i1, count).clone();
    at::Tensor Err1 = at::zeros({rows, count}, W.options());
    at::Tensor Hinv1 = Hinv.narrow(0, i1, count).narrow(1, i1, count);
    at::Tensor d2 = Hinv1.diagonal().pow(2);
    at::Tensor prune = at::zeros({rows, count}, W.options().dtype(c10::kBool));
    if (!nm) {
      // Exactly round(rows * count * sparsity) weights of the block, the smallest saliencies
      // (the reference's "<= threshold" prunes one more, plus ties).
      const at::Tensor score = (W1.pow(2) / d2.unsqueeze(0)).reshape(-1);
      const int64_t k = std::llround(static_cast<double>(score.numel()) * s.sparsity);
      if (k > 0) {
        at::Tensor order = std::get<1>(score.sort(/*stable=*/true, 0, /*descending=*/false));
        prune.view(-1).index_fill_(0, order.slice(0, 0, k), true);
      }
    }
    for (int64_t i = 0; i < count; ++i) {
      if (nm && i % s.group_m == 0) {
        // The M columns from here, as updated so far: prune the M - N smallest per row.
        at::Tensor score = W1.narrow(1, i, s.group_m).pow(2) / d2.narrow(0, i, s.group_m).unsqueeze(0);
        at::Tensor order = std::get<1>(score.sort(/*stable=*/true, 1, /*descending=*/false));
        prune.narrow(1, i, s.group_m).scatter_(1, order.slice(1, 0, s.group_m - s.keep_n), true);
      }
      at::Tensor w = W1.select(1, i);
      at::Tensor q = w.masked_fill(prune.select(1, i), 0.0);
      const float d = Hinv1[i][i].item<float>();
      at::Tensor err = (w - q) / d;
      W1.narrow(1, i, count - i).addr_(err, Hinv1.select(0, i).narrow(0, i, count - i), 1.0, -1.0);
      W1.select(1, i).copy_(q);
      Err1.select(1, i).copy_(err);
    }
    W.narrow(1, i1, count).copy_(W1);
    if (i2 < cols) W.narrow(1, i2, cols - i2).sub_(at::mm(Err1, Hinv.narrow(0, i1, count).narrow(1, i2, cols - i2)));
  }
  r.weight = W;
  return r;
}

}  // namespace llmc::prune
