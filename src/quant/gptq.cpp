#include "gptq.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/argsort.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/round.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>

#include <vector>

#include "llmc/calib/obs.h"
#include "llmc/core/error.h"
#include "llmc/model/packed_weight.h"

namespace llmc::quant {

GptqResult gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian, const GptqSettings& s) {
  at::Tensor W = weight.to(c10::kCPU, c10::kFloat).clone();
  at::Tensor H = hessian.to(c10::kCPU, c10::kFloat).clone();
  const int64_t rows = W.size(0), cols = W.size(1);
  const int64_t gs = s.group_size == -1 ? cols : s.group_size;
  if (gs <= 0 || cols % gs != 0) {
    throw UsageError("--group_size " + std::to_string(s.group_size) + " must be -1 or divide the input width " +
                     std::to_string(cols));
  }
  const int64_t groups = cols / gs;
  GptqResult r;
  // Per-row quantizer of the whole matrix (used when there are no groups), fitted before the
  // dead inputs are zeroed, as the reference does.
  model::QuantGrid grid = model::gptq_grid(W, s.bits, s.sym);
  r.dead_inputs = calib::zero_dead_inputs(H, W);
  // Static groups (act-order): every natural group's quantizer from the weights before any
  // update, so g_idx stays one group per group_size columns.
  std::vector<model::QuantGrid> group_grids(static_cast<size_t>(groups));
  if (s.desc_act) {
    for (int64_t g = 0; g < groups; ++g) group_grids[static_cast<size_t>(g)] = model::gptq_grid(W.narrow(1, g * gs, gs), s.bits, s.sym);
  }
  at::Tensor perm;
  if (s.desc_act) {
    perm = at::argsort(H.diagonal(), /*dim=*/0, /*descending=*/true);
    W = W.index_select(1, perm);
    H = H.index_select(0, perm).index_select(1, perm);
  }
  const calib::InverseFactor inv = calib::inverse_factor(H, s.damp_percent);
  r.damp_used = inv.damp_used;
  r.damp_retries = inv.retries;
  const at::Tensor& Hinv = inv.upper;
  const int64_t* pp = perm.defined() ? perm.data_ptr<int64_t>() : nullptr;

  at::Tensor Q = at::empty({rows, cols}, W.options());
  at::Tensor codes = at::empty({rows, cols}, at::TensorOptions().dtype(c10::kLong));
  std::vector<at::Tensor> scales(static_cast<size_t>(groups)), zeros(static_cast<size_t>(groups));
  const double maxq = static_cast<double>((int64_t{1} << s.bits) - 1);
  for (int64_t i1 = 0; i1 < cols; i1 += s.block_size) {
    const int64_t i2 = std::min(i1 + s.block_size, cols), count = i2 - i1;
    at::Tensor W1 = W.narrow(1, i1, count).clone();
    at::Tensor Err1 = at::empty({rows, count}, W.options());
    at::Tensor Hinv1 = Hinv.narrow(0, i1, count).narrow(1, i1, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = i1 + i;
      if (s.group_size != -1) {
        if (s.desc_act) {
          grid = group_grids[static_cast<size_t>(pp[col] / gs)];
        } else if (col % gs == 0) {
          // From W: inter-block updates applied, this block's own not yet (as the reference).
          grid = model::gptq_grid(W.narrow(1, col, gs), s.bits, s.sym);
          scales[static_cast<size_t>(col / gs)] = grid.scale;
          zeros[static_cast<size_t>(col / gs)] = grid.zero;
        }
      }
      at::Tensor w = W1.select(1, i);
      at::Tensor c = at::clamp(at::round(w / grid.scale) + grid.zero, 0, maxq);
      at::Tensor q = grid.scale * (c - grid.zero);
      codes.select(1, col).copy_(c);
      Q.select(1, col).copy_(q);
      const float d = Hinv1[i][i].item<float>();
      at::Tensor err = (w - q) / d;
      W1.narrow(1, i, count - i).addr_(err, Hinv1.select(0, i).narrow(0, i, count - i), 1.0, -1.0);
      Err1.select(1, i).copy_(err);
    }
    if (i2 < cols) W.narrow(1, i2, cols - i2).sub_(at::mm(Err1, Hinv.narrow(0, i1, count).narrow(1, i2, cols - i2)));
  }

  if (s.group_size == -1) {
    scales[0] = grid.scale;
    zeros[0] = grid.zero;
  } else if (s.desc_act) {
    for (int64_t g = 0; g < groups; ++g) {
      scales[static_cast<size_t>(g)] = group_grids[static_cast<size_t>(g)].scale;
      zeros[static_cast<size_t>(g)] = group_grids[static_cast<size_t>(g)].zero;
    }
  }
  if (perm.defined()) {
    at::Tensor inv_perm = at::argsort(perm);
    Q = Q.index_select(1, inv_perm);
    codes = codes.index_select(1, inv_perm);
  }
  r.codes = codes;
  r.values = Q;
  r.scales = at::stack(scales);
  r.zeros = at::stack(zeros);
  r.g_idx = at::arange(cols, at::TensorOptions().dtype(c10::kLong)).div(gs, "floor");
  return r;
}

}  // namespace llmc::quant
