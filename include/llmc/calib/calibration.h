// The shared calibration layer (docs/architecture.md): calibration data with one option table
// for every tool, statistics collectors over a Linear's inputs, and the layer-wise driver that
// compresses decoder layer i on the outputs of the already compressed layers before it,
// group by group in the model's true-sequential order, keeping each finished layer on disk so
// that a killed run continues where it stopped. A calibrated method (GPTQ, AWQ, SparseGPT,
// Wanda, ...) is a LayerMethod: it receives a Linear's weight and statistics and returns a
// dense or packed weight.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <set>
#include <string>
#include <vector>

#include "llmc/calib/layer_driver.h"
#include "llmc/calib/options.h"
#include "llmc/core/options.h"
#include "llmc/core/run_context.h"
#include "llmc/model/causal_lm.h"

namespace llmc::calib {

// ---------------------------------------------------------------- statistics

struct Collect {
  bool hessian{true};   // H = 2/n sum x x^T (n = sequences), float32, as GPTQ/SparseGPT accumulate it
  bool sum_sq{false};   // sum of x_j^2 per input feature, float64 (Wanda's ||X_j||^2)
  bool sum_abs{false};  // sum of |x_j|, float64 (activation importance, AWQ's mean |x|)
  bool max_abs{false};  // max |x_j|, float32
  bool inputs{false};   // the inputs themselves, float32 [tokens, in] per batch (AWQ's searches)
};

struct LinearStats {
  at::Tensor hessian;
  at::Tensor sum_sq, sum_abs, max_abs;
  std::vector<at::Tensor> inputs;
  int64_t tokens{0};
  int64_t sequences{0};
  // Adds a batch of inputs [..., T, in] (the leading dimensions count as sequences).
  void add(const at::Tensor& x, const Collect& what);
  at::Tensor mean_abs() const;  // float32 [in]
};

// ||(W - W') X||^2 / ||W X||^2 over the calibration inputs, from H (0 when W X is 0).
double output_error(const at::Tensor& reference, const at::Tensor& compressed, const at::Tensor& hessian);
// ||W - W'|| / ||W|| (Frobenius).
double relative_error(const at::Tensor& reference, const at::Tensor& compressed);

// ---------------------------------------------------------------- methods

// A compressed Linear: packed, or a dense float32 weight [out, in].
struct Compressed {
  at::Tensor dense;
  std::shared_ptr<model::PackedWeight> packed;
  std::map<std::string, double> info;  // per-Linear figures for metrics.json (damp used, ...)
  at::Tensor effective() const;  // the float32 weight the model now computes with
};

class LayerJob;

class LayerMethod {
 public:
  virtual ~LayerMethod() = default;
  // What compress() needs to see.
  virtual Collect collect() const { return {}; }
  // Compress group after group, each calibrated on the outputs of the groups before it
  // (GPTQ); false: every Linear of the layer from one pass (SparseGPT, Wanda as published).
  virtual bool true_sequential() const { return true; }
  // One Linear: `weight` float32 [out, in], `stats` of its inputs.
  virtual Compressed compress(const std::string& linear, const at::Tensor& weight, const LinearStats& stats) = 0;
  // The whole layer; the default compresses the layout's groups with compress(). Methods
  // that edit several modules at once (AWQ's scale folding, structured pruning) override it.
  virtual void compress_layer(LayerJob& job);
  // A finished layer read back from the run's state on resume, with the extras it saved.
  virtual void restored(int64_t /*layer*/, const std::map<std::string, at::Tensor>& /*extras*/) {}
};

// What a method sees of one decoder layer.
class LayerJob {
 public:
  LayerJob(model::CausalLM& lm, LayerDriver& driver, int64_t layer);
  model::CausalLM& model() { return lm_; }
  const model::LayerLayout& layout() const { return layout_; }
  int64_t layer() const { return layer_; }
  LayerDriver& driver() { return driver_; }
  // Runs the layer over the calibration inputs and gathers statistics of `linears`' inputs
  // (the layer stops early once they are seen).
  std::map<std::string, LinearStats> collect(const std::vector<std::string>& linears, const Collect& what);
  // Puts `c` into the model and records its output error against `reference` (the weight it
  // replaces, in the same input space as `stats`).
  void install(const std::string& linear, Compressed c, const at::Tensor& reference, const LinearStats& stats);
  // Records the output error of a Linear whose result was installed by other means.
  void record_error(const std::string& linear, double error, const std::map<std::string, double>& info = {});
  // A parameter the method changed (saved with the layer, restored on resume, written out).
  void changed_parameter(const std::string& name);
  // A tensor the method wants back on resume (restored()).
  void save_extra(const std::string& name, const at::Tensor& t);
  // A note for metrics.json (e.g. a scale group skipped and why).
  void note(const std::string& text);

  // Results, read by the driver loop.
  std::map<std::string, std::map<std::string, double>> linears;  // name -> {output_error, relative_error, ...}
  std::set<std::string> params;
  std::map<std::string, at::Tensor> extras;
  std::vector<std::string> notes;

 private:
  model::CausalLM& lm_;
  LayerDriver& driver_;
  int64_t layer_;
  model::LayerLayout layout_;
};

// ---------------------------------------------------------------- the layer-wise run

struct LayerwiseOptions {
  std::string state_dir;    // where finished layers are kept until the output is committed
  std::string fingerprint;  // the run's identity (JSON text): a different one discards the kept state
};

struct LayerReport {
  int64_t layer{0};
  std::map<std::string, std::map<std::string, double>> linears;  // name -> {output_error, ...}
  std::vector<std::string> notes;
};

struct LayerwiseResult {
  std::vector<LayerReport> layers;
  int64_t resumed_layers{0};  // layers read back from the state
  double mean_output_error() const;
  // [{layer, mean_output_error, linears: {name: {...}}, notes}] for metrics.json.
  nlohmann::json to_json() const;
};

// Compresses every decoder layer of `lm` with `method`. Each finished layer's tensors
// (Linears packed or dense, changed parameters, extras) go to state_dir/layer_<i>.safetensors
// before the next begins; a run started again with the same fingerprint installs them and
// continues with the first layer not finished.
LayerwiseResult run_layerwise(model::CausalLM& lm, LayerDriver& driver, LayerMethod& method, const LayerwiseOptions& options,
                              const RunContext& ctx);

// A run's identity for LayerwiseOptions::fingerprint: the tool, its input, every option value
// (`fields`, the tool's option table) and the seed, dtype and threads that change the numbers.
std::string run_fingerprint(const std::string& tool, const std::string& input, const std::vector<OptionField>& fields,
                            const RunContext& ctx);

// The state directory beside an output directory, and its removal once the output is committed.
std::string state_dir_for(const std::string& output_dir);
void remove_state(const std::string& state_dir);

}  // namespace llmc::calib
