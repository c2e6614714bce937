#include "llmc/pipeline/pipeline.h"

#include <chrono>
#include <filesystem>
#include <sstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/core/metrics.h"
#include "llmc/core/version.h"
#include "llmc/eval/evaluate.h"
#include "llmc/tokenizer/tokenizer.h"
#include "llmc/io/hash.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_file.h"
#include "llmc/pipeline/recipe.h"
#include "llmc/report/report.h"
#include "stage_tools.h"

namespace llmc::pipeline {

namespace fs = std::filesystem;

namespace {

struct Model {
  std::string dir;
  std::string hash;
};

struct PlannedStage {
  std::string run;
  StageSpec spec;
  std::string input;        // "" when the stage creates the model
  std::string output;
  std::string hash;
  nlohmann::json options;   // with @references resolved to directories
  bool cached{false};
  bool shared{false};       // same hash as a stage of an earlier run: its output is reused
  bool is_original{false};  // the first stage created the model: it is the original
};

// Identity of a model directory given by the user: its path and each file's name, size and
// modification time (cheap; a changed file changes it).
std::string directory_hash(const std::string& dir) {
  nlohmann::json files = nlohmann::json::array();
  std::error_code ec;
  std::vector<fs::path> entries;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) entries.push_back(it->path());
  std::sort(entries.begin(), entries.end());
  for (const auto& p : entries) {
    if (!fs::is_regular_file(p, ec)) continue;
    const auto mtime = fs::last_write_time(p, ec).time_since_epoch().count();
    files.push_back({p.filename().string(), fs::file_size(p, ec), static_cast<int64_t>(mtime)});
  }
  return io::sha256_hex(nlohmann::json{{"dir", fs::absolute(dir).string()}, {"files", files}}.dump());
}

std::string bookkeeping(const std::string& output_dir, const std::string& kind, const std::string& hash) {
  return (fs::path(output_dir) / ".pipeline" / (kind + "-" + hash.substr(0, 16) + ".json")).string();
}

bool stage_done(const PlannedStage& s, const std::string& output_dir) {
  std::error_code ec;
  const std::string marker = bookkeeping(output_dir, "stage", s.hash);
  if (!fs::is_regular_file(marker, ec) || !fs::is_regular_file(fs::path(s.output) / "config.json", ec) ||
      !fs::is_regular_file(fs::path(s.output) / "metrics.json", ec)) {
    return false;
  }
  const nlohmann::json m = io::read_json_file(marker);
  return m.value("hash", std::string()) == s.hash && m.value("output", std::string()) == s.output;
}

// Replaces "@name" string values by the directory (for running) or the hash (for hashing).
nlohmann::json resolve_refs(const nlohmann::json& options, const std::map<std::string, Model>& models, bool for_hash) {
  nlohmann::json out = options;
  for (auto it = out.begin(); it != out.end(); ++it) {
    if (!it.value().is_string()) continue;
    const std::string v = it.value().get<std::string>();
    if (v.empty() || v[0] != '@') continue;
    const Model& m = models.at(v.substr(1));
    it.value() = for_hash ? "@" + m.hash : m.dir;
  }
  return out;
}

std::vector<PlannedStage> plan(const Recipe& recipe, const std::vector<Run>& runs, const PipelineOptions& po,
                               uint64_t ctx_seed, std::optional<Model>& original) {
  if (!recipe.model_name_or_path.empty()) {
    try {
      const std::string dir = io::resolve_model_dir(recipe.model_name_or_path);
      original = Model{dir, directory_hash(dir)};
    } catch (const InputError& e) {
      if (!po.dry_run) throw;
      // A plan can be shown before the model exists (e.g. before the demo has made it).
      log_warn(std::string("dry run: ") + e.what());
      original = Model{recipe.model_name_or_path + " (not found)", "missing"};
    }
  }
  std::vector<PlannedStage> out;
  std::map<std::string, std::string> dir_of_hash;
  for (const auto& run : runs) {
    const fs::path run_dir = run.name.empty() ? fs::path(recipe.output_dir) : fs::path(recipe.output_dir) / run.name;
    std::map<std::string, Model> models;
    if (original) models["original"] = *original;
    std::optional<Model> prev = original;
    for (size_t i = 0; i < run.recipe.stages.size(); ++i) {
      const StageSpec& st = run.recipe.stages[i];
      const StageTool& tool = stage_tools().get(st.tool);
      PlannedStage p;
      p.run = run.name;
      p.spec = st;
      const bool creates = tool.creates_model(st.options);
      std::optional<Model> input = st.input.empty() ? prev : std::optional<Model>(models.at(st.input.substr(1)));
      if (!creates) p.input = input->dir;
      // The seed: a stage's own `seed` option wins; else --seed becomes the option of tools
      // that have one; tools without run with ctx.seed, which then belongs to their identity.
      nlohmann::json options = st.options;
      if (tool.has_seed_option && po.seed && !options.contains("seed")) options["seed"] = *po.seed;
      p.options = resolve_refs(options, models, false);
      nlohmann::json identity = {{"llmc_version", version()},
                                 {"tool", st.tool},
                                 {"options", resolve_refs(options, models, true)},
                                 {"input", creates ? std::string() : input->hash}};
      if (!tool.has_seed_option) identity["seed"] = ctx_seed;
      p.hash = io::sha256_hex(identity.dump());
      auto seen = dir_of_hash.find(p.hash);
      p.shared = seen != dir_of_hash.end();
      p.output = p.shared ? seen->second : (run_dir / st.name).string();
      dir_of_hash.emplace(p.hash, p.output);
      p.cached = p.shared || (!po.force && stage_done(p, recipe.output_dir));
      const Model made{p.output, p.hash};
      models[st.name] = made;
      if (i == 0 && !original && creates) {
        models["original"] = made;
        p.is_original = true;
      }
      prev = made;
      out.push_back(std::move(p));
    }
  }
  return out;
}

// Evaluations are cached by (model hash, evaluation settings, the base it is compared with,
// llmc version); --force evaluates again (speed figures are measurements, and a forced stage
// was rebuilt). With an eval_file, every model but the base itself is compared with the base
// (the original) over the same windows: KL, top-1 agreement (evaluate --compare_to). A model
// whose tokenizer differs from the base's (a student with its own) is evaluated without the
// comparison, and says why.
nlohmann::json evaluate_model(const std::string& dir, const std::string& hash, const Recipe& recipe, bool force,
                              const std::optional<Model>& base, const RunContext& ctx) {
  eval::EvaluateOptions eo;
  apply_json_options(eval::option_fields(eo), recipe.evaluation, "recipe.evaluation");
  eo.model_name_or_path = dir;
  std::string skipped;
  if (base && base->hash != hash && !eo.eval_file.empty() && eo.compare_to.empty()) {
    const nlohmann::json a = eval::tokenizer_fingerprint(*tokenizer::load_tokenizer(dir));
    const nlohmann::json b = eval::tokenizer_fingerprint(*tokenizer::load_tokenizer(base->dir));
    if (a == b) {
      eo.compare_to = base->dir;
    } else {
      skipped = "its tokenizer (" + a.value("name", std::string()) + ", " + std::to_string(a.value("vocab_size", int64_t{0})) +
                " tokens) differs from the original's; KL needs one vocabulary";
    }
  }
  const std::string key = io::sha256_hex(nlohmann::json{{"model", hash}, {"evaluation", recipe.evaluation},
                                                        {"base", eo.compare_to.empty() ? std::string() : base->hash},
                                                        {"llmc_version", version()}}
                                             .dump());
  const std::string cache = bookkeeping(recipe.output_dir, "eval", key);
  std::error_code ec;
  if (!force && fs::is_regular_file(cache, ec)) return io::read_json_file(cache);
  log_info("evaluating " + dir + (eo.compare_to.empty() ? "" : " against " + eo.compare_to));
  nlohmann::json result = eval::run_evaluate(eo, ctx);
  if (!skipped.empty()) result["compare_skipped"] = skipped;
  fs::create_directories(fs::path(cache).parent_path(), ec);
  io::write_file_atomic(cache, result.dump(2) + "\n");
  return result;
}

nlohmann::json read_metrics(const std::string& dir) {
  std::error_code ec;
  const fs::path p = fs::path(dir) / "metrics.json";
  return fs::is_regular_file(p, ec) ? io::read_json_file(p.string()) : nlohmann::json::object();
}

}  // namespace

nlohmann::json run_pipeline(const PipelineOptions& po, const RunContext& ctx) {
  const Recipe recipe = load_recipe(po.config);
  const std::vector<Run> runs = expand_sweep(recipe);
  std::vector<std::string> swept_keys;
  for (auto it = recipe.sweep.begin(); it != recipe.sweep.end(); ++it) swept_keys.push_back(it.key());
  std::optional<Model> original;
  std::vector<PlannedStage> stages = plan(recipe, runs, po, ctx.seed, original);

  nlohmann::json plan_json = nlohmann::json::array();
  for (const auto& s : stages) {
    plan_json.push_back({{"run", s.run},
                         {"stage", s.spec.name},
                         {"tool", s.spec.tool},
                         {"input", s.input.empty() ? nlohmann::json() : nlohmann::json(s.input)},
                         {"output", s.output},
                         {"hash", s.hash.substr(0, 16)},
                         {"status", s.shared ? "shared with an earlier run" : s.cached ? "cached" : "to run"},
                         {"options", s.options}});
  }
  if (po.dry_run) {
    return {{"dry_run", true},
            {"recipe", recipe.source},
            {"runs", runs.size()},
            {"original", original ? nlohmann::json(original->dir) : nlohmann::json()},
            {"plan", plan_json}};
  }

  // Run the stages.
  std::error_code ec;
  fs::create_directories(fs::path(recipe.output_dir) / ".pipeline", ec);
  if (ec) throw ResourceError("cannot create " + recipe.output_dir + ": " + ec.message());
  for (auto& s : stages) {
    ctx.check_cancelled();
    if (s.cached) {
      log_info((s.run.empty() ? "" : s.run + " ") + s.spec.name + ": " + (s.shared ? "same as an earlier run" : "up to date") + " (" + s.output + ")");
      continue;
    }
    // A stage that was started with the same hash and not finished (interrupted) continues
    // from its checkpoints when its tool has them (distill); --force starts it over.
    const std::string pending = bookkeeping(recipe.output_dir, "pending", s.hash);
    const bool resume = !po.force && fs::is_regular_file(pending, ec) && fs::is_directory(s.output, ec);
    io::write_file_atomic(pending, nlohmann::json{{"hash", s.hash}, {"output", s.output}}.dump() + "\n");
    log_info((s.run.empty() ? "" : s.run + " ") + s.spec.name + ": " + (resume ? "continuing " : "running ") + s.spec.tool +
             " -> " + s.output);
    const auto t0 = std::chrono::steady_clock::now();
    stage_tools().get(s.spec.tool).run(s.options, s.input, s.output, resume, ctx);
    fs::remove(pending, ec);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    io::write_file_atomic(bookkeeping(recipe.output_dir, "stage", s.hash),
                          nlohmann::json{{"hash", s.hash}, {"output", s.output}, {"tool", s.spec.tool}, {"options", s.options},
                                         {"input", s.input}, {"seconds", seconds}}
                                  .dump(2) +
                              "\n");
  }

  // Evaluate the original and every stage; assemble rows.
  report::ReportInput rep;
  rep.title = "Pipeline report: " + recipe.name;
  rep.recipe_path = recipe.source;
  rep.swept_keys = swept_keys;
  nlohmann::json runs_json = nlohmann::json::array();
  std::set<std::string> evaluated;  // models shared by runs are evaluated once
  size_t k = 0;
  for (const auto& run : runs) {
    nlohmann::json run_json = {{"name", run.name}, {"swept", run.swept}, {"stages", nlohmann::json::array()}};
    std::optional<Model> base = original;  // or the stage that creates the model
    auto add = [&](const std::string& stage, const std::string& tool, const Model& m, const nlohmann::json& extra) {
      report::Row row;
      row.run = run.name;
      row.stage = stage;
      row.tool = tool;
      row.path = m.dir;
      row.swept = run.swept;
      row.evaluation = evaluate_model(m.dir, m.hash, recipe, po.force && !evaluated.count(m.hash), base, ctx);
      evaluated.insert(m.hash);
      row.stage_metrics = tool.empty() ? nlohmann::json::object() : read_metrics(m.dir);
      nlohmann::json sj = {{"stage", stage}, {"tool", tool}, {"path", m.dir}, {"hash", m.hash.substr(0, 16)},
                           {"evaluation", row.evaluation}};
      for (auto it = extra.begin(); it != extra.end(); ++it) sj[it.key()] = it.value();
      if (!tool.empty()) sj["tool_metrics"] = row.stage_metrics;
      run_json["stages"].push_back(sj);
      rep.rows.push_back(std::move(row));
    };
    if (original) add("original", "", *original, {});
    for (size_t i = 0; i < run.recipe.stages.size(); ++i, ++k) {
      const PlannedStage& s = stages[k];
      if (s.is_original) base = Model{s.output, s.hash};
      add(s.spec.name, s.spec.tool, Model{s.output, s.hash}, {{"cached", s.cached}, {"is_original", s.is_original}});
    }
    runs_json.push_back(run_json);
  }
  std::vector<std::string> written = report::write_report(recipe.output_dir, rep);
  if (!swept_keys.empty()) {
    const auto tables = report::write_sweep_tables((fs::path(recipe.output_dir) / "sweep").string(), rep);
    written.insert(written.end(), tables.begin(), tables.end());
  }
  nlohmann::json flags = {{"force", po.force}};
  if (po.seed) flags["seed"] = *po.seed;
  const nlohmann::json all =
      wrap_metrics("pipeline", {{"recipe", recipe.source}, {"name", recipe.name}, {"runs", runs_json}}, flags, -1.0);
  const std::string metrics = (fs::path(recipe.output_dir) / "metrics.json").string();
  io::write_file_atomic(metrics, all.dump(2) + "\n");
  written.push_back(metrics);

  nlohmann::json result = {{"name", recipe.name}, {"output_dir", recipe.output_dir}, {"runs", runs.size()},
                           {"stages_run", std::count_if(stages.begin(), stages.end(), [](const auto& s) { return !s.cached; })},
                           {"files", written}};
  nlohmann::json table = nlohmann::json::array();
  for (const auto& r : rep.rows) {
    table.push_back({{"run", r.run}, {"stage", r.stage}, {"perplexity", r.evaluation.value("perplexity", nlohmann::json())},
                     {"disk_size_bytes", r.evaluation.value("disk_size_bytes", nlohmann::json())}});
  }
  result["summary"] = table;
  return result;
}

std::string format_plan(const nlohmann::json& r) {
  std::ostringstream o;
  o << "pipeline plan for " << r.value("recipe", std::string()) << " (" << r.value("runs", 0) << " run(s), "
    << (r["original"].is_string() ? "original " + r["original"].get<std::string>() : std::string("the first stage creates the model"))
    << ")\n";
  for (const auto& p : r["plan"]) {
    const std::string run = p["run"].get<std::string>();
    o << "  " << (run.empty() ? "" : run + " ") << p["stage"].get<std::string>() << " [" << p["tool"].get<std::string>() << "] "
      << p["status"].get<std::string>() << "\n"
      << "    input:   " << (p["input"].is_null() ? std::string("(creates the model)") : p["input"].get<std::string>()) << "\n"
      << "    output:  " << p["output"].get<std::string>() << "\n"
      << "    hash:    " << p["hash"].get<std::string>() << "\n"
      << "    options: " << p["options"].dump() << "\n";
  }
  return o.str();
}

}  // namespace llmc::pipeline
