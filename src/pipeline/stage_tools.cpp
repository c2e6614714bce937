#include "stage_tools.h"

#include "llmc/core/options.h"
#include "llmc/core/metrics.h"
#include "llmc/distill/distill.h"
#include "llmc/prune/prune.h"
#include "llmc/quant/quantize.h"

namespace llmc::pipeline {

namespace {

using Decorate = std::function<nlohmann::json(const nlohmann::json&)>;

// A tool with options type O: its option table, how input and output are placed, its
// validation and its library call.
template <class O>
struct ToolParts {
  std::string name;
  std::function<std::vector<OptionField>(O&)> fields;
  std::function<void(O&, const std::string& input, const std::string& output)> place;
  std::function<void(const O&)> validate;
  std::function<nlohmann::json(const O&, const RunContext&, const Decorate&)> run;
  std::function<bool(const O&)> creates_model = [](const O&) { return false; };
  // Sets the options that continue an interrupted run from its checkpoints (null: none).
  std::function<void(O&)> resume = nullptr;
};

template <class O>
StageTool make_tool(ToolParts<O> p) {
  auto bind = [p](const nlohmann::json& options, const std::string& where, O& o) {
    apply_json_options(p.fields(o), options, where);
    o.overwrite = true;  // the pipeline decides when a stage reruns
  };
  StageTool t;
  t.check = [p, bind](const nlohmann::json& options, const std::string& where) {
    O o;
    bind(options, where, o);
    p.place(o, p.creates_model(o) ? "" : "<input>", "<output>");
    try {
      p.validate(o);
    } catch (const UsageError& e) {
      throw UsageError(where + ": " + e.what());
    }
  };
  t.creates_model = [p, bind](const nlohmann::json& options) {
    O o;
    bind(options, "options", o);
    return p.creates_model(o);
  };
  O probe;
  for (const auto& f : p.fields(probe)) t.has_seed_option = t.has_seed_option || f.name == "seed";
  t.run = [p, bind](const nlohmann::json& options, const std::string& input, const std::string& output, bool resume,
                    const RunContext& ctx) {
    O o;
    bind(options, "options", o);
    p.place(o, p.creates_model(o) ? "" : input, output);
    if (resume && p.resume) p.resume(o);
    nlohmann::json resolved = nlohmann::json::object();
    for (const auto& f : p.fields(o)) resolved[f.name] = option_value(f);
    const std::string tool = p.name;
    return p.run(o, ctx, [tool, resolved](const nlohmann::json& m) { return wrap_metrics(tool, m, resolved, -1.0); });
  };
  return t;
}

}  // namespace

const Registry<StageTool>& stage_tools() {
  static const Registry<StageTool> registry = [] {
    Registry<StageTool> r("tool");
    r.add("quantize", make_tool<quant::QuantizeOptions>(
                          {"quantize", quant::option_fields,
                           [](quant::QuantizeOptions& o, const std::string& in, const std::string& out) {
                             o.model_name_or_path = in;
                             o.output_dir = out;
                           },
                           quant::validate, quant::run_quantize}));
    r.add("prune", make_tool<prune::PruneOptions>({"prune", prune::option_fields,
                                                   [](prune::PruneOptions& o, const std::string& in, const std::string& out) {
                                                     o.model_path = in;
                                                     o.output_dir = out;
                                                   },
                                                   prune::validate, prune::run_prune}));
    r.add("distill", make_tool<distill::DistillOptions>(
                         {"distill", distill::option_fields,
                          [](distill::DistillOptions& o, const std::string& in, const std::string& out) {
                            o.student_model = in;
                            o.output_dir = out;
                          },
                          distill::validate, distill::run_distill,
                          [](const distill::DistillOptions& o) { return !o.student_config.empty(); },
                          [](distill::DistillOptions& o) {
                            o.resume_from_checkpoint = "latest";  // none yet: distill starts over
                            o.overwrite = false;
                          }}));
    return r;
  }();
  return registry;
}

}  // namespace llmc::pipeline
