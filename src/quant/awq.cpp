#include "awq.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/max.h>
#include <ATen/ops/min.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <limits>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/model/packed_weight.h"

namespace llmc::quant {

namespace {

// AWQ's pseudo-quantizer: W -> dequantized codes, group-wise along the input.
at::Tensor fake_quantize(const at::Tensor& w, int64_t group_size) {
  const int64_t out = w.size(0), in = w.size(1);
  at::Tensor wg = w.reshape({out * (in / group_size), group_size});
  const model::QuantGrid grid = model::awq_grid(wg);
  return model::grid_values(model::grid_codes(wg, grid, 4), grid).reshape({out, in});
}

bool is_query_or_key(const std::string& role) {
  return role.find("q_proj") != std::string::npos || role.find("k_proj") != std::string::npos;
}

class AwqMethod : public calib::LayerMethod {
 public:
  explicit AwqMethod(const AwqSettings& s) : s_(s) {}

  calib::Collect collect() const override {
    calib::Collect c;
    c.sum_abs = true;
    c.inputs = true;
    return c;
  }
  bool true_sequential() const override { return false; }

  calib::Compressed compress(const std::string&, const at::Tensor& w, const calib::LinearStats&) override {
    calib::Compressed c;
    c.packed = model::quantize_awq_rtn(w, gs(w.size(1)));
    return c;
  }

  void compress_layer(calib::LayerJob& job) override {
    auto& lm = job.model();
    const auto& layout = job.layout();
    std::vector<std::string> names;
    std::map<std::string, std::string> role;
    for (const auto& l : layout.linears) {
      names.push_back(l.name);
      role[l.name] = l.role;
    }
    auto stats = job.collect(names, collect());  // one pass over the layer as it is
    std::map<std::string, at::Tensor> original, weight;
    for (const auto& n : names) original[n] = weight[n] = lm.linear_weight(n);
    std::map<std::string, at::Tensor> col_scale, row_scale;  // what each Linear's columns / rows were multiplied by
    std::vector<at::Tensor> reference_out;

    // 1. Search every group's scales with the layer as it is, then apply them all.
    std::vector<std::pair<const model::ScaleGroup*, at::Tensor>> chosen;
    for (const auto& g : layout.scale_groups) {
      if (!g.exact) {
        job.note("scale group " + g.prev + " -> " + std::to_string(g.linears.size()) + " Linear(s) not scaled: " +
                 g.not_exact_because);
        continue;
      }
      if (g.whole_layer_loss && reference_out.empty()) reference_out = job.driver().outputs();
      chosen.emplace_back(&g, search_scales(job, g, stats, weight, reference_out));
    }
    {
      c10::InferenceMode guard;
      for (const auto& [g, sc] : chosen) apply_scales(job, *g, sc, weight, stats, col_scale, row_scale);
    }
    // 2. Clip, 3. quantize and install.
    for (const auto& n : names) {
      at::Tensor w = weight[n];
      if (s_.clip && !is_query_or_key(role[n])) w = clip(w, stats.at(n));
      auto packed = model::quantize_awq_rtn(w, gs(w.size(1)));
      // The output error in the original input space: undo the folded scales.
      at::Tensor eff = packed->dequantize();
      if (row_scale.count(n)) eff = eff / row_scale[n].unsqueeze(1);
      if (col_scale.count(n)) eff = eff / col_scale[n].unsqueeze(0);
      job.record_error(n, calib::output_error(original[n], eff, stats.at(n).hessian),
                       {{"relative_error", calib::relative_error(original[n], eff)}});
      lm.install_linear(n, at::Tensor(), std::move(packed));
    }
  }

 private:
  int64_t gs(int64_t in) const { return s_.group_size == -1 ? in : s_.group_size; }

  // The activation-aware scales of one group: the ratio of 20 with the smallest output MSE.
  at::Tensor search_scales(calib::LayerJob& job, const model::ScaleGroup& g, std::map<std::string, calib::LinearStats>& stats,
                           const std::map<std::string, at::Tensor>& weight, const std::vector<at::Tensor>& reference_out) {
    auto& lm = job.model();
    const calib::LinearStats& st = stats.at(g.linears.front());
    const at::Tensor x_mean = st.mean_abs();
    at::Tensor w_mean;
    if (s_.duo_scaling) {
      std::vector<at::Tensor> ws;
      for (const auto& n : g.linears) ws.push_back(weight.at(n));
      at::Tensor w = at::cat(ws, 0);
      const int64_t in = w.size(1);
      at::Tensor wg = w.abs().reshape({-1, gs(in)});
      wg = wg / (std::get<0>(wg.max(1, true)) + 1e-6);
      w_mean = wg.reshape({-1, in}).mean(0);
    }
    // Reference outputs of the Linears alone (group 2-4), bias left out (it cancels).
    std::vector<at::Tensor> ref_linear;
    if (!g.whole_layer_loss) {
      for (const auto& x : st.inputs) ref_linear.push_back(at::mm(x, weight.at(g.linears.front()).t()));
    }
    double best = std::numeric_limits<double>::infinity();
    at::Tensor best_s;
    for (int64_t r = 0; r < s_.n_grid; ++r) {
      const double ratio = static_cast<double>(r) / static_cast<double>(s_.n_grid);
      at::Tensor sc = s_.duo_scaling ? x_mean.pow(ratio) / (w_mean.pow(1.0 - ratio) + 1e-4) : x_mean.pow(ratio);
      sc = at::clamp_min(sc, 1e-4);
      sc = sc / std::sqrt(sc.max().item<double>() * sc.min().item<double>());
      sc = at::where(sc.isfinite(), sc, at::ones_like(sc));
      double loss = 0.0;
      if (g.whole_layer_loss) {
        for (const auto& n : g.linears) {
          lm.install_linear(n, fake_quantize(weight.at(n) * sc.unsqueeze(0), gs(weight.at(n).size(1))) / sc.unsqueeze(0), nullptr);
        }
        const auto out = job.driver().outputs();
        int64_t count = 0;
        for (size_t b = 0; b < out.size(); ++b) {
          loss += (out[b].to(c10::kFloat) - reference_out[b].to(c10::kFloat)).pow(2).sum().item<double>();
          count += out[b].numel();
        }
        loss /= static_cast<double>(std::max<int64_t>(1, count));
      } else {
        const at::Tensor wq = fake_quantize(weight.at(g.linears.front()) * sc.unsqueeze(0), gs(weight.at(g.linears.front()).size(1))) / sc.unsqueeze(0);
        int64_t count = 0;
        for (size_t b = 0; b < st.inputs.size(); ++b) {
          loss += (at::mm(st.inputs[b], wq.t()) - ref_linear[b]).pow(2).sum().item<double>();
          count += ref_linear[b].numel();
        }
        loss /= static_cast<double>(std::max<int64_t>(1, count));
      }
      if (std::isfinite(loss) && loss < best) {
        best = loss;
        best_s = sc;
      }
    }
    if (g.whole_layer_loss) {
      for (const auto& n : g.linears) lm.install_linear(n, weight.at(n), nullptr);
    }
    if (!best_s.defined()) throw InputError("AWQ: no finite loss in the scale search of " + g.prev + " (NaN activations?)");
    return best_s;
  }

  // Folds 1/s into the operation before and s into the group's columns; the cached inputs
  // of the group are divided by s (the clip search sees the scaled activations).
  void apply_scales(calib::LayerJob& job, const model::ScaleGroup& g, const at::Tensor& sc, std::map<std::string, at::Tensor>& weight,
                    std::map<std::string, calib::LinearStats>& stats, std::map<std::string, at::Tensor>& col_scale,
                    std::map<std::string, at::Tensor>& row_scale) {
    auto& lm = job.model();
    if (g.prev_is_norm) {
      for (const char* p : {".weight", ".bias"}) {
        at::Tensor t = lm.parameter(g.prev + p);
        if (!t.defined()) continue;
        t.div_(sc.to(t.device(), t.scalar_type()));
        job.changed_parameter(g.prev + p);
      }
    } else {
      at::Tensor& w = weight.at(g.prev);
      const int64_t n = sc.size(0);
      w.narrow(0, w.size(0) - n, n).div_(sc.unsqueeze(1));
      at::Tensor rs = row_scale.count(g.prev) ? row_scale[g.prev] : at::ones({w.size(0)});
      rs.narrow(0, w.size(0) - n, n).div_(sc);
      row_scale[g.prev] = rs;
      at::Tensor b = lm.parameter(g.prev + ".bias");
      if (b.defined()) {
        b.narrow(0, b.size(0) - n, n).div_(sc.to(b.device(), b.scalar_type()));
        job.changed_parameter(g.prev + ".bias");
      }
      lm.install_linear(g.prev, w, nullptr);
    }
    for (const auto& n : g.linears) {
      weight.at(n) = weight.at(n) * sc.unsqueeze(0);
      col_scale[n] = col_scale.count(n) ? col_scale[n] * sc : sc;
      lm.install_linear(n, weight.at(n), nullptr);
      for (auto& x : stats.at(n).inputs) x.div_(sc.unsqueeze(0));
    }
  }

  // AWQ's clip search: per (row, group) the largest |w| among 1.00, 0.95, ..., 0.55 of the
  // original that best keeps the group's partial products on a sample of the inputs.
  at::Tensor clip(const at::Tensor& w, const calib::LinearStats& st) {
    at::Tensor x = at::cat(st.inputs, 0);
    const int64_t step = std::max<int64_t>(1, x.size(0) / s_.clip_tokens);
    x = x.slice(0, 0, x.size(0), step);
    const int64_t out = w.size(0), in = w.size(1), gs = this->gs(in), groups = in / gs;
    at::Tensor xg = x.reshape({-1, groups, gs}).permute({1, 0, 2});  // [groups, tokens, gs]
    at::Tensor result = w.clone();
    const int64_t batch = out % 256 == 0 ? 256 : 64;
    for (int64_t r0 = 0; r0 < out; r0 += batch) {
      const int64_t nr = std::min(batch, out - r0);
      at::Tensor wb = w.narrow(0, r0, nr).reshape({nr, groups, gs}).permute({1, 2, 0});  // [groups, gs, rows]
      at::Tensor org_out = at::matmul(xg, wb);                                          // [groups, tokens, rows]
      at::Tensor org_max = std::get<0>(wb.abs().max(1, true));                          // [groups, 1, rows]
      at::Tensor best_max = org_max.clone();
      at::Tensor best_err = at::full_like(org_max, 1e9);
      for (int64_t i = 0; i < 10; ++i) {
        at::Tensor max_val = org_max * (1.0 - static_cast<double>(i) / 20.0);
        at::Tensor cw = at::max(at::min(wb, max_val), -max_val);
        // Pseudo-quantize each (row, group) along gs.
        at::Tensor flat = cw.permute({2, 0, 1}).reshape({nr * groups, gs});
        const model::QuantGrid grid = model::awq_grid(flat);
        at::Tensor q = model::grid_values(model::grid_codes(flat, grid, 4), grid).reshape({nr, groups, gs}).permute({1, 2, 0});
        at::Tensor err = (at::matmul(xg, q) - org_out).pow(2).mean(1, true);  // [groups, 1, rows]
        at::Tensor better = err < best_err;
        best_err = at::where(better, err, best_err);
        best_max = at::where(better, max_val, best_max);
      }
      at::Tensor lim = best_max.permute({2, 0, 1});  // [rows, groups, 1]
      at::Tensor rows = result.narrow(0, r0, nr).reshape({nr, groups, gs});
      rows.copy_(at::max(at::min(rows, lim), -lim));
    }
    return result;
  }

  AwqSettings s_;
};

}  // namespace

std::unique_ptr<calib::LayerMethod> make_awq_method(const AwqSettings& settings) {
  return std::make_unique<AwqMethod>(settings);
}

}  // namespace llmc::quant
