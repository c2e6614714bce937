#include "llmc/model/layer_driver.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randint.h>
#include <c10/core/InferenceMode.h>

#include "llmc/core/error.h"

namespace llmc::model {

LayerDriver::LayerDriver(CausalLM& model, const std::vector<int64_t>& ids, int64_t samples, int64_t seq_len,
                         at::Generator& gen, int64_t batch)
    : model_(model) {
  const int64_t T = std::min<int64_t>({seq_len, static_cast<int64_t>(ids.size()), model.info().max_positions});
  if (T < 2) throw InputError("calibration text has too few tokens (" + std::to_string(ids.size()) + ")");
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

void LayerDriver::observe(const Observer& observe) {
  c10::InferenceMode guard;
  for (size_t b = 0; b < hidden_.size(); ++b) model_.run_layer(layer_, hidden_[b], masks_[b], observe);
}

void LayerDriver::advance() {
  c10::InferenceMode guard;
  for (size_t b = 0; b < hidden_.size(); ++b) hidden_[b] = model_.run_layer(layer_, hidden_[b], masks_[b], nullptr);
  ++layer_;
}

}  // namespace llmc::model
