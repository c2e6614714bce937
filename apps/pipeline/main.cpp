// pipeline: run a recipe of quantize / prune / distill stages with an evaluation of every
// model, sweeps, reports and plots. Without arguments it runs configs/pipeline_config.json,
// the embedded demo. Thin: flags -> options -> llmc::pipeline::run_pipeline.
#include "../common/tool.h"
#include "llmc/core/error.h"
#include "llmc/pipeline/pipeline.h"

int main(int argc, char** argv) {
  CLI::App app{
      "pipeline: chain quantize, prune and distill stages from a JSON recipe, evaluate the original and every stage,\n"
      "expand sweeps, and write metrics.json, summary.csv, report.md and SVG plots under the recipe's output_dir\n"
      "(the recipe schema: docs/recipes.md). Stages whose output exists with the same hash (options + everything\n"
      "upstream) are skipped."};
  llmc::pipeline::PipelineOptions o;
  app.add_flag("--force", o.force, "rerun every stage even when its output is up to date");
  app.add_flag("--dry_run", o.dry_run, "print the resolved plan (runs, stages, inputs, outputs, hashes) and stop");
  llmc::cli::ToolSettings settings;
  settings.defaults.config = "configs/pipeline_config.json";
  settings.config_is_flag_file = false;
  settings.config_help = "the recipe (JSON, docs/recipes.md): name, model_name_or_path, output_dir, evaluation, stages, sweep";
  settings.summary = [&](const nlohmann::json& m) {
    if (m.value("dry_run", false)) return llmc::pipeline::format_plan(m);
    return std::string();
  };
  return llmc::cli::run_tool(
      "pipeline", app, argc, argv,
      [&](const llmc::RunContext& ctx, const llmc::cli::CommonFlags& f, const llmc::cli::Decorate&) {
        if (f.overwrite) {
          throw llmc::UsageError("--overwrite: pipeline replaces a stage's output only when its hash changed; "
                                 "use --force to rerun every stage");
        }
        o.config = f.config;
        if (app.count("--seed") > 0) o.seed = f.seed;
        return llmc::pipeline::run_pipeline(o, ctx);
      },
      settings);
}
