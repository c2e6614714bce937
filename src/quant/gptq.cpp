#include "gptq.h"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/argsort.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/round.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "llmc/calib/obs.h"
#include "llmc/core/error.h"
#include "llmc/model/packed_weight.h"

namespace llmc::quant {

GptqResult gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian, const GptqSettings& s) {
  at::Tensor W = weight.to(c10::kCPU, c10::kFloat).clone();
  calib::WorkingHessian working(hessian);  // the caller's, edited on its diagonal and restored
  at::Tensor& H = working.matrix;
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
  H = at::Tensor();  // the factor is all the loop needs
  r.damp_used = inv.damp_used;
  r.damp_retries = inv.retries;
  const at::Tensor Hinv = inv.upper.contiguous();
  const int64_t* pp = perm.defined() ? perm.data_ptr<int64_t>() : nullptr;

  at::Tensor Q = at::empty({rows, cols}, W.options());
  at::Tensor codes = at::empty({rows, cols}, at::TensorOptions().dtype(c10::kLong));
  std::vector<at::Tensor> scales(static_cast<size_t>(groups)), zeros(static_cast<size_t>(groups));
  const float maxq = static_cast<float>((int64_t{1} << s.bits) - 1);
  float* wp = W.data_ptr<float>();
  float* qp = Q.data_ptr<float>();
  int64_t* cp = codes.data_ptr<int64_t>();
  const float* hp = Hinv.data_ptr<float>();
  for (int64_t i1 = 0; i1 < cols; i1 += s.block_size) {
    const int64_t i2 = std::min(i1 + s.block_size, cols), count = i2 - i1;
    // The quantizer of every column of the block, fitted before the block starts: W holds the
    // updates of earlier blocks but not this block's own (as the reference fits them).
    std::vector<const float*> col_scale(static_cast<size_t>(count)), col_zero(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = i1 + i;
      const model::QuantGrid* g = &grid;
      if (s.group_size != -1) {
        if (s.desc_act) {
          g = &group_grids[static_cast<size_t>(pp[col] / gs)];
        } else {
          const size_t gi = static_cast<size_t>(col / gs);
          if (col % gs == 0) {
            model::QuantGrid fitted = model::gptq_grid(W.narrow(1, col, gs), s.bits, s.sym);
            scales[gi] = fitted.scale.contiguous();
            zeros[gi] = fitted.zero.contiguous();
          }
          col_scale[static_cast<size_t>(i)] = scales[gi].data_ptr<float>();
          col_zero[static_cast<size_t>(i)] = zeros[gi].data_ptr<float>();
          continue;
        }
      }
      col_scale[static_cast<size_t>(i)] = g->scale.data_ptr<float>();
      col_zero[static_cast<size_t>(i)] = g->zero.data_ptr<float>();
    }
    // Rows are independent: each quantizes its columns in order, passing each rounding error
    // to its later columns of the block through row i of the inverse factor.
    at::Tensor Err1 = at::empty({rows, count}, W.options());
    float* ep = Err1.data_ptr<float>();
    at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
      std::vector<float> buf(static_cast<size_t>(count));
      for (int64_t r = r0; r < r1; ++r) {
        std::copy(wp + r * cols + i1, wp + r * cols + i2, buf.begin());
        for (int64_t i = 0; i < count; ++i) {
          const int64_t col = i1 + i;
          const float sc = col_scale[static_cast<size_t>(i)][r], z = col_zero[static_cast<size_t>(i)][r];
          const float w = buf[static_cast<size_t>(i)];
          const float c = std::min(std::max(std::nearbyint(w / sc) + z, 0.0f), maxq);  // round half to even
          const float q = sc * (c - z);
          cp[r * cols + col] = static_cast<int64_t>(c);
          qp[r * cols + col] = q;
          const float* h = hp + col * cols + i1;
          const float err = (w - q) / h[i];
          ep[r * count + i] = err;
          for (int64_t j = i + 1; j < count; ++j) buf[static_cast<size_t>(j)] -= err * h[j];
        }
      }
    });
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
