#include "llmc/calib/calibration.h"

#include <ATen/TensorOperators.h>
#include <nlohmann/json.hpp>
#include <ATen/ops/addmm.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/core/progress.h"
#include "llmc/core/version.h"
#include "llmc/eval/evaluate.h"
#include "llmc/io/json_fields.h"
#include "llmc/io/json_file.h"
#include "llmc/io/safetensors.h"
#include "llmc/tokenizer/tokenizer.h"

namespace llmc::calib {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- data

std::vector<OptionField> option_fields(CalibrationOptions& o) {
  return {
      {"calibration_file", "calibration text: .txt, or .jsonl with one document per line (see --text_field)",
       &o.calibration_file},
      {"text_field", ".jsonl calibration files: the field holding each document's text", &o.text_field},
      {"num_calibration_samples", "calibration sequences, drawn at offsets chosen by --seed", &o.num_calibration_samples},
      {"calibration_seq_len", "tokens per calibration sequence (0 = min(2048, max_position_embeddings))",
       &o.calibration_seq_len},
  };
}

void validate(const CalibrationOptions& o) {
  if (o.num_calibration_samples < 1 || o.num_calibration_samples > 1000000) {
    throw UsageError("--num_calibration_samples must be in [1, 1000000], found " + std::to_string(o.num_calibration_samples));
  }
  if (o.calibration_seq_len != 0 && (o.calibration_seq_len < 2 || o.calibration_seq_len > 1000000)) {
    throw UsageError("--calibration_seq_len must be 0 (automatic) or in [2, 1000000], found " +
                     std::to_string(o.calibration_seq_len));
  }
  if (o.text_field.empty()) throw UsageError("--text_field must not be empty");
}

int64_t sample_length(const CalibrationOptions& o, int64_t max_positions) {
  const int64_t want = o.calibration_seq_len == 0 ? 2048 : o.calibration_seq_len;
  return std::min(want, max_positions);
}

namespace {

std::string read_calibration_text(const CalibrationOptions& o) {
  const std::string& path = o.calibration_file;
  if (path.size() < 6 || path.compare(path.size() - 6, 6, ".jsonl") != 0) return eval::read_eval_text(path);
  std::istringstream lines(io::read_text_file(path));
  std::string line, text;
  for (int64_t lineno = 1; std::getline(lines, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    const nlohmann::json doc = io::parse_json(line, where);
    if (!doc.is_object()) throw InputError(where + ": expected a JSON object");
    const std::string t = io::json_required<std::string>(doc, o.text_field, where);
    if (!text.empty()) text += "\n\n";
    text += t;
  }
  if (text.empty()) throw InputError(path + ": no document with a non-empty '" + quote_prefix(o.text_field, 40) + "' field");
  if (!tokenizer::is_valid_utf8(text)) throw InputError(path + ": text is not valid UTF-8");
  return text;
}

}  // namespace

std::vector<int64_t> calibration_ids(const CalibrationOptions& o, const std::string& model_dir, int64_t sample_len) {
  if (o.calibration_file.empty()) throw UsageError("this method needs calibration data: pass --calibration_file");
  std::vector<int64_t> ids = tokenizer::load_tokenizer(model_dir)->encode(read_calibration_text(o), true);
  if (static_cast<int64_t>(ids.size()) < sample_len) {
    throw InputError(o.calibration_file + ": " + std::to_string(ids.size()) + " tokens, fewer than one calibration sample of " +
                     std::to_string(sample_len) + " (pass a longer text or a smaller --calibration_seq_len)");
  }
  return ids;
}

// ---------------------------------------------------------------- statistics

void LinearStats::add(const at::Tensor& x, const Collect& what) {
  const int64_t in = x.size(-1);
  const int64_t seqs = x.dim() >= 3 ? x.numel() / (x.size(-1) * x.size(-2)) : 1;
  at::Tensor x2 = x.reshape({-1, in}).to(c10::kCPU, c10::kFloat);
  if (what.hessian) {
    // GPTQ's running mean: H <- H n/(n+b) + (2/(n+b)) X^T X, n counting sequences.
    if (!hessian.defined()) hessian = at::zeros({in, in}, x2.options());
    const double n = static_cast<double>(sequences), b = static_cast<double>(seqs);
    hessian.mul_(n / (n + b));
    hessian.addmm_(x2.t(), x2, 1.0, 2.0 / (n + b));
  }
  if (what.sum_sq || what.sum_abs) {
    at::Tensor xd = x2.to(c10::kDouble);
    if (what.sum_sq) {
      at::Tensor s = xd.pow(2).sum(0);
      sum_sq = sum_sq.defined() ? sum_sq + s : s;
    }
    if (what.sum_abs) {
      at::Tensor s = xd.abs().sum(0);
      sum_abs = sum_abs.defined() ? sum_abs + s : s;
    }
  }
  if (what.max_abs) {
    at::Tensor m = std::get<0>(x2.abs().max(0));
    max_abs = max_abs.defined() ? at::maximum(max_abs, m) : m;
  }
  if (what.inputs) inputs.push_back(x2.contiguous());
  tokens += x2.size(0);
  sequences += seqs;
}

at::Tensor LinearStats::mean_abs() const {
  if (!sum_abs.defined()) throw UsageError("mean_abs: |x| was not collected");
  return (sum_abs / static_cast<double>(std::max<int64_t>(1, tokens))).to(c10::kFloat);
}

double output_error(const at::Tensor& reference, const at::Tensor& compressed, const at::Tensor& hessian) {
  // float32 products (a figure for reports; about 1e-6 relative), summed in float64.
  at::Tensor w = reference.to(c10::kCPU, c10::kFloat);
  at::Tensor d = w - compressed.to(c10::kCPU, c10::kFloat);
  at::Tensor h = hessian.to(c10::kCPU, c10::kFloat);
  const double num = (at::mm(d, h) * d).sum(c10::kDouble).item<double>();
  const double den = (at::mm(w, h) * w).sum(c10::kDouble).item<double>();
  return den > 0 ? std::max(0.0, num) / den : 0.0;
}

namespace {

double mean_error(const std::map<std::string, std::map<std::string, double>>& linears) {
  double sum = 0;
  for (const auto& [name, v] : linears) sum += v.at("output_error");
  return linears.empty() ? 0.0 : sum / static_cast<double>(linears.size());
}

}  // namespace

double LayerwiseResult::mean_output_error() const {
  double sum = 0;
  int64_t n = 0;
  for (const auto& l : layers) {
    for (const auto& [name, v] : l.linears) {
      sum += v.at("output_error");
      ++n;
    }
  }
  return n == 0 ? 0.0 : sum / static_cast<double>(n);
}

nlohmann::json LayerwiseResult::to_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& l : layers) {
    out.push_back({{"layer", l.layer}, {"mean_output_error", mean_error(l.linears)}, {"linears", l.linears}, {"notes", l.notes}});
  }
  return out;
}

// ---------------------------------------------------------------- methods

at::Tensor Compressed::effective() const { return packed ? packed->dequantize() : dense.to(c10::kCPU, c10::kFloat); }

void LayerMethod::compress_layer(LayerJob& job) {
  const auto& layout = job.layout();
  std::vector<std::vector<std::string>> groups = layout.sequential;
  if (!true_sequential()) {
    std::vector<std::string> all;
    for (const auto& g : groups) all.insert(all.end(), g.begin(), g.end());
    groups = {all};
  }
  for (const auto& group : groups) {
    auto stats = job.collect(group, collect());
    for (const auto& name : group) {
      const at::Tensor w = job.model().linear_weight(name);
      job.install(name, compress(name, w, stats.at(name)), w, stats.at(name));
    }
  }
}

LayerJob::LayerJob(model::CausalLM& lm, LayerDriver& driver, int64_t layer)
    : lm_(lm), driver_(driver), layer_(layer), layout_(lm.layer_layout(layer)) {}

std::map<std::string, LinearStats> LayerJob::collect(const std::vector<std::string>& names, const Collect& what) {
  Collect w = what;
  w.hessian = true;  // every calibrated run reports the output error, which needs H
  std::map<std::string, LinearStats> stats;
  const std::set<std::string> only(names.begin(), names.end());
  driver_.observe([&](const std::string& name, const at::Tensor& x) { stats[name].add(x, w); }, only);
  for (const auto& n : names) {
    if (!stats.count(n)) throw Error("calibration: the layer never ran Linear '" + n + "'");
  }
  return stats;
}

double relative_error(const at::Tensor& reference, const at::Tensor& compressed) {
  const double norm = reference.to(c10::kDouble).norm().item<double>();
  return (reference.to(c10::kDouble) - compressed.to(c10::kDouble)).norm().item<double>() / std::max(norm, 1e-30);
}

void LayerJob::install(const std::string& linear, Compressed c, const at::Tensor& reference, const LinearStats& stats) {
  const at::Tensor eff = c.effective();
  std::map<std::string, double> info = c.info;
  info["relative_error"] = relative_error(reference, eff);
  record_error(linear, output_error(reference, eff, stats.hessian), info);
  lm_.install_linear(linear, c.dense, std::move(c.packed));
}

void LayerJob::record_error(const std::string& linear, double error, const std::map<std::string, double>& info) {
  std::map<std::string, double> entry = info;
  entry["output_error"] = error;
  linears[linear] = entry;
}

void LayerJob::changed_parameter(const std::string& name) { params.insert(name); }
void LayerJob::save_extra(const std::string& name, const at::Tensor& t) { extras[name] = t.to(c10::kCPU).contiguous(); }
void LayerJob::note(const std::string& text) {
  if (std::find(notes.begin(), notes.end(), text) == notes.end()) notes.push_back(text);
}

// ---------------------------------------------------------------- state and the run

std::string run_fingerprint(const std::string& tool, const std::string& input, const std::vector<OptionField>& fields,
                            const RunContext& ctx) {
  nlohmann::json options = nlohmann::json::object();
  for (const auto& f : fields) options[f.name] = option_value(f);
  return nlohmann::json({{"tool", tool}, {"input", input}, {"options", options}, {"seed", ctx.seed},
                         {"dtype", dtype_name(ctx.dtype)}, {"threads", ctx.threads}})
      .dump();
}

std::string state_dir_for(const std::string& output_dir) {
  fs::path p = fs::path(output_dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return (p.parent_path() / ("." + p.filename().string() + ".llmc-layers")).string();
}

void remove_state(const std::string& state_dir) {
  std::error_code ec;
  fs::remove_all(state_dir, ec);
}

namespace {

std::string layer_file(const std::string& dir, int64_t i, const char* ext) {
  char name[64];
  std::snprintf(name, sizeof(name), "layer_%05lld.%s", static_cast<long long>(i), ext);
  return (fs::path(dir) / name).string();
}

// The model's packed Linears by module name ("model.decoder.layers.0.fc1").
std::map<std::string, std::shared_ptr<model::PackedWeight>> packed_linears(const model::CausalLM& lm) {
  std::map<std::string, std::shared_ptr<model::PackedWeight>> out;
  for (const auto& [name, p] : lm.packed_weights()) out[name.substr(0, name.size() - 7)] = p;  // minus ".weight"
  return out;
}

// Saves what layer i now holds: its Linears (packed pieces or a dense weight), the changed
// parameters and the extras; the JSON (written last) marks the layer finished.
void save_layer(const std::string& dir, model::CausalLM& lm, const LayerJob& job) {
  io::StateDict tensors;
  nlohmann::json packed = nlohmann::json::object();
  const auto packed_now = packed_linears(lm);
  for (const auto& l : job.layout().linears) {
    auto it = packed_now.find(l.name);
    if (it != packed_now.end()) {
      auto* p = it->second.get();
      for (const auto& [k, t] : p->state_dict(l.name + ".")) tensors[k] = t.to(c10::kCPU).contiguous();
      packed[l.name] = p->checkpoint_format();
    } else {
      tensors[l.name + ".weight"] = lm.linear_weight(l.name);
    }
  }
  for (const auto& name : job.params) tensors[name] = lm.parameter(name).to(c10::kCPU).contiguous().clone();
  for (const auto& [name, t] : job.extras) tensors["extra." + name] = t;
  const std::string st = layer_file(dir, job.layer(), "safetensors");
  io::save_safetensors(st + ".tmp", tensors);
  fs::rename(st + ".tmp", st);
  nlohmann::json meta = {{"layer", job.layer()},
                         {"linears", job.linears},
                         {"notes", job.notes},
                         {"packed", packed},
                         {"params", std::vector<std::string>(job.params.begin(), job.params.end())},
                         {"extras", nlohmann::json::array()}};
  for (const auto& [name, t] : job.extras) meta["extras"].push_back(name);
  io::write_file_atomic(layer_file(dir, job.layer(), "json"), meta.dump(1) + "\n");
}

// Reads layer i back into the model; false when it was not finished.
bool restore_layer(LayerReport& report, const std::string& dir, model::CausalLM& lm, LayerMethod& method, int64_t i) {
  const std::string js = layer_file(dir, i, "json"), st = layer_file(dir, i, "safetensors");
  std::error_code ec;
  if (!fs::is_regular_file(js, ec) || !fs::is_regular_file(st, ec)) return false;
  const nlohmann::json meta = io::read_json_file(js);
  auto file = io::SafetensorsFile::open(st);
  auto has = [&](const std::string& n) { return file.contains(n); };
  auto take = [&](const std::string& n) {
    if (!file.contains(n)) throw InputError(st + ": missing tensor '" + n + "'");
    return file.tensor(n).clone();
  };
  const model::LayerLayout layout = lm.layer_layout(i);
  const nlohmann::json packed = io::json_field<nlohmann::json>(meta, "packed", nlohmann::json::object(), js);
  for (const auto& l : layout.linears) {
    if (packed.contains(l.name)) {
      model::PackedLayout pl;
      const std::string fmt = packed.at(l.name).is_string() ? packed.at(l.name).get<std::string>() : "";
      const bool gptq = fmt == "gptq" || fmt == "gptq_v2";
      pl.quant_method = fmt == "awq" ? "awq" : gptq ? "gptq" : "bitsandbytes";
      if (gptq) pl.checkpoint_format = fmt;
      auto p = model::load_packed_weight(l.name + ".", has, take, l.out_features, l.in_features, pl);
      if (!p) throw InputError(st + ": no packed weight for '" + l.name + "'");
      lm.install_linear(l.name, at::Tensor(), std::move(p));
    } else {
      lm.install_linear(l.name, take(l.name + ".weight"), nullptr);
    }
  }
  c10::InferenceMode guard;
  for (const auto& name : io::json_field<std::vector<std::string>>(meta, "params", {}, js)) {
    at::Tensor p = lm.parameter(name);
    if (!p.defined()) throw InputError(st + ": the model has no parameter '" + quote_prefix(name) + "'");
    p.copy_(take(name));
  }
  std::map<std::string, at::Tensor> extras;
  for (const auto& name : io::json_field<std::vector<std::string>>(meta, "extras", {}, js)) extras[name] = take("extra." + name);
  method.restored(i, extras);
  report.layer = i;
  report.linears = meta.at("linears").get<std::map<std::string, std::map<std::string, double>>>();
  report.notes = io::json_field<std::vector<std::string>>(meta, "notes", {}, js);
  return true;
}

}  // namespace

LayerwiseResult run_layerwise(model::CausalLM& lm, LayerDriver& driver, LayerMethod& method, const LayerwiseOptions& o,
                              const RunContext& ctx) {
  LayerwiseResult result;
  const std::string run_file = (fs::path(o.state_dir) / "run.json").string();
  std::error_code ec;
  bool resuming = false;
  nlohmann::json fingerprint = {{"run", o.fingerprint}, {"llmc", version()}};
  if (fs::is_regular_file(run_file, ec)) {
    nlohmann::json kept;
    try {
      kept = io::read_json_file(run_file);
    } catch (const InputError&) {
    }
    resuming = kept == fingerprint;
    if (!resuming) {
      log_info("discarding the kept layers of an earlier run with other settings: " + o.state_dir);
      remove_state(o.state_dir);
    }
  }
  fs::create_directories(o.state_dir);
  if (!resuming) io::write_file_atomic(run_file, fingerprint.dump(1) + "\n");

  // Layer 0's inputs are embedded by now: the parameters that view the checkpoint's mapping
  // (with 16-bit weights kept, all of them; the token embedding is the largest) leave memory
  // and come back from the page cache when a layer or the writer reads them. Nothing has
  // edited them yet (the mapping is copy-on-write), so nothing is lost.
  for (const auto& [name, t] : lm.named_parameters()) io::release_pages(t);

  // Fault injection for the tests: SIGKILL right after layer N was kept.
  const char* kill_after = std::getenv("LLMC_TEST_KILL_AFTER_LAYER");
  const int64_t layers = driver.num_layers();
  Progress progress("calibrated layers", layers, ctx.progress, "layer");
  for (int64_t i = 0; i < layers; ++i) {
    ctx.check_cancelled();
    LayerReport entry;
    if (resuming && restore_layer(entry, o.state_dir, lm, method, i)) {
      ++result.resumed_layers;
    } else {
      resuming = false;  // later layers are computed again from here on
      LayerJob job(lm, driver, i);
      // The layer's dense weights in the compute dtype while it is being compressed (16-bit
      // weights kept as stored would be converted in every product of every pass).
      const auto packed = packed_linears(lm);
      for (const auto& l : job.layout().linears) {
        if (!packed.count(l.name)) lm.install_linear(l.name, lm.linear_weight(l.name), nullptr);
      }
      method.compress_layer(job);
      save_layer(o.state_dir, lm, job);
      if (kill_after != nullptr && std::to_string(i) == kill_after) std::raise(SIGKILL);
      entry.layer = i;
      entry.linears = job.linears;
      entry.notes = job.notes;
    }
    result.layers.push_back(entry);
    driver.advance();  // the compressed layer makes the next layer's inputs
    progress.advance();
  }
  progress.finish();
  if (result.resumed_layers > 0) {
    log_info("continued a killed run: " + std::to_string(result.resumed_layers) + " finished layers read from " + o.state_dir);
  }
  return result;
}

}  // namespace llmc::calib
