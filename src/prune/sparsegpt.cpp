#include "sparsegpt.h"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "llmc/calib/obs.h"
#include "llmc/core/error.h"

namespace llmc::prune {

SparseGptResult sparsegpt_prune(const at::Tensor& weight, const at::Tensor& hessian, const SparseGptSettings& s) {
  at::Tensor W = weight.to(c10::kCPU, c10::kFloat).clone();
  calib::WorkingHessian working(hessian);  // the caller's, edited on its diagonal and restored
  at::Tensor& H = working.matrix;
  const int64_t rows = W.size(0), cols = W.size(1);
  const bool nm = s.group_m > 0;
  if (nm && (cols % s.group_m != 0 || s.block_size % s.group_m != 0)) {
    throw UsageError("N:M pattern with M=" + std::to_string(s.group_m) + " needs input widths divisible by M (found " +
                     std::to_string(cols) + ")");
  }
  SparseGptResult r;
  r.dead_inputs = calib::zero_dead_inputs(H, W);
  const calib::InverseFactor inv = calib::inverse_factor(H, s.damp_percent);
  H = at::Tensor();  // the factor is all the loop needs
  r.damp_used = inv.damp_used;
  r.damp_retries = inv.retries;
  const at::Tensor Hinv = inv.upper.contiguous();
  float* wp = W.data_ptr<float>();
  const float* hp = Hinv.data_ptr<float>();
  const int64_t prune_per_group = nm ? s.group_m - s.keep_n : 0;
  for (int64_t i1 = 0; i1 < cols; i1 += s.block_size) {
    const int64_t i2 = std::min(i1 + s.block_size, cols), count = i2 - i1;
    const at::Tensor d2 = Hinv.narrow(0, i1, count).narrow(1, i1, count).diagonal().pow(2).contiguous();
    const float* d2p = d2.data_ptr<float>();
    at::Tensor prune = at::zeros({rows, count}, W.options().dtype(c10::kBool));
    if (!nm) {
      // Exactly round(rows * count * sparsity) weights of the block, the smallest saliencies
      // w^2 / [H^-1]_jj (the reference's "<= threshold" prunes one more, plus ties).
      const at::Tensor score = (W.narrow(1, i1, count).pow(2) / d2.unsqueeze(0)).reshape(-1);
      const int64_t k = std::llround(static_cast<double>(score.numel()) * s.sparsity);
      if (k > 0) {
        at::Tensor order = std::get<1>(score.sort(/*stable=*/true, 0, /*descending=*/false));
        prune.view(-1).index_fill_(0, order.slice(0, 0, k), true);
      }
    }
    bool* mp = prune.data_ptr<bool>();
    // Rows are independent: each visits its columns in order, zeroing the pruned ones and
    // passing their values to its later columns through row i of the inverse factor.
    at::Tensor Err1 = at::empty({rows, count}, W.options());
    float* ep = Err1.data_ptr<float>();
    at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
      std::vector<float> buf(static_cast<size_t>(count));
      std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(s.group_m, 1)));
      for (int64_t r = r0; r < r1; ++r) {
        std::copy(wp + r * cols + i1, wp + r * cols + i2, buf.begin());
        bool* mask = mp + r * count;
        for (int64_t i = 0; i < count; ++i) {
          if (nm && i % s.group_m == 0) {
            // The M columns from here as updated so far: prune the M - N smallest saliencies
            // (ties: the lower index first).
            auto sal = [&](int64_t k) { return buf[static_cast<size_t>(i + k)] * buf[static_cast<size_t>(i + k)] / d2p[i + k]; };
            for (int64_t k = 0; k < s.group_m; ++k) order[static_cast<size_t>(k)] = k;
            std::stable_sort(order.begin(), order.begin() + s.group_m, [&](int64_t a, int64_t b) { return sal(a) < sal(b); });
            for (int64_t k = 0; k < prune_per_group; ++k) mask[i + order[static_cast<size_t>(k)]] = true;
          }
          const float w = buf[static_cast<size_t>(i)];
          const float q = mask[i] ? 0.0f : w;
          const float* h = hp + (i1 + i) * cols + i1;
          const float err = (w - q) / h[i];
          ep[r * count + i] = err;
          buf[static_cast<size_t>(i)] = q;
          for (int64_t j = i + 1; j < count; ++j) buf[static_cast<size_t>(j)] -= err * h[j];
        }
        std::copy(buf.begin(), buf.end(), wp + r * cols + i1);
      }
    });
    if (i2 < cols) W.narrow(1, i2, cols - i2).sub_(at::mm(Err1, Hinv.narrow(0, i1, count).narrow(1, i2, cols - i2)));
  }
  r.weight = W;
  return r;
}

}  // namespace llmc::prune
