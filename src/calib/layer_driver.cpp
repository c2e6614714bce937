#include "llmc/calib/layer_driver.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randint.h>
#include <c10/core/InferenceMode.h>

#include "llmc/core/error.h"

namespace llmc::calib {

namespace {

// Thrown by an observer to stop a layer once what it needs was seen.
struct StopLayer {};

}  // namespace

LayerDriver::LayerDriver(model::CausalLM& model, const std::vector<int64_t>& ids, int64_t samples, int64_t seq_len,
                         at::Generator& gen, int64_t batch)
    : model_(model) {
  const int64_t T = std::min<int64_t>(seq_len, model.info().max_positions);
  if (T < 2 || static_cast<int64_t>(ids.size()) < T) {
    throw InputError("the calibration text has " + std::to_string(ids.size()) + " tokens, fewer than one sample of " +
                     std::to_string(std::max<int64_t>(T, 2)) +
                     " (pass a longer --calibration_file or a smaller --calibration_seq_len)");
  }
  c10::InferenceMode guard;
  for (int64_t n0 = 0; n0 < samples; n0 += batch) {
    const int64_t nb = std::min(batch, samples - n0);
    at::Tensor tokens = at::empty({nb, T}, at::TensorOptions().dtype(c10::kLong));
    auto* tp = tokens.data_ptr<int64_t>();
    for (int64_t r = 0; r < nb; ++r) {
      const int64_t span = static_cast<int64_t>(ids.size()) - T;
      const int64_t start = span > 0 ? at::randint(span + 1, {1}, gen).item<int64_t>() : 0;
      for (int64_t t = 0; t < T; ++t) tp[r * T + t] = ids[static_cast<size_t>(start + t)];
    }
    auto [h, mask] = model.embed(tokens.to(model.device()), at::ones({nb, T}, tokens.options()).to(model.device()));
    hidden_.push_back(h);
    masks_.push_back(mask);
  }
}

void LayerDriver::observe(const Observer& observe, const std::set<std::string>& only) {
  c10::InferenceMode guard;
  for (size_t b = 0; b < hidden_.size(); ++b) {
    if (only.empty()) {
      model_.run_layer(layer_, hidden_[b], masks_[b], observe);
      continue;
    }
    std::set<std::string> seen;
    try {
      model_.run_layer(layer_, hidden_[b], masks_[b], [&](const std::string& name, const at::Tensor& x) {
        if (only.count(name) != 0) {
          observe(name, x);
          seen.insert(name);
        } else if (seen.size() == only.size()) {
          throw StopLayer{};
        }
      });
    } catch (const StopLayer&) {
    }
  }
}

std::vector<at::Tensor> LayerDriver::outputs() {
  c10::InferenceMode guard;
  std::vector<at::Tensor> out;
  for (size_t b = 0; b < hidden_.size(); ++b) out.push_back(model_.run_layer(layer_, hidden_[b], masks_[b], nullptr));
  return out;
}

void LayerDriver::advance() {
  c10::InferenceMode guard;
  for (size_t b = 0; b < hidden_.size(); ++b) hidden_[b] = model_.run_layer(layer_, hidden_[b], masks_[b], nullptr);
  ++layer_;
}

}  // namespace llmc::calib
