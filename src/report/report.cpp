#include "llmc/report/report.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <regex>
#include <sstream>

#include "llmc/io/json_file.h"
#include "llmc/report/svg.h"

namespace llmc::report {

namespace fs = std::filesystem;

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string value_text(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char b[32];
    std::snprintf(b, sizeof(b), "%.6g", v.get<double>());
    return b;
  }
  return v.dump();
}

// An evaluation figure: a top-level key of evaluate's metrics, "compare.<key>" or
// "tasks.<task>.<key>".
nlohmann::json figure(const Row& r, const std::string& key) {
  auto at = [](const nlohmann::json& obj, const std::string& k) {
    return obj.is_object() && obj.contains(k) ? obj[k] : nlohmann::json();
  };
  if (key.rfind("compare.", 0) == 0) return at(at(r.evaluation, "compare"), key.substr(8));
  if (key.rfind("tasks.", 0) == 0) {  // tasks.<name>.<figure>: a task name may hold dots, a figure does not
    const size_t last = key.rfind('.');
    return at(at(at(r.evaluation, "tasks"), key.substr(6, last - 6)), key.substr(last + 1));
  }
  return at(r.evaluation, key);
}

// Columns beyond the fixed ones, present when any row has them: the comparison with the
// original (evaluate --compare_to) and each task's accuracy. (header, figure key).
std::vector<std::pair<std::string, std::string>> extra_columns(const ReportInput& in) {
  std::vector<std::pair<std::string, std::string>> cols;
  bool compare = false;
  std::map<std::string, bool> tasks;  // name -> multiple choice
  for (const auto& r : in.rows) {
    compare = compare || r.evaluation.contains("compare");
    const auto t = r.evaluation.find("tasks");
    if (t == r.evaluation.end() || !t->is_object()) continue;
    for (auto it = t->begin(); it != t->end(); ++it) tasks[it.key()] = it.value().contains("acc_norm");
  }
  if (compare) {
    for (const char* k : {"kl_mean", "kl_p99", "top1_agreement", "perplexity_ratio"}) cols.emplace_back(k, std::string("compare.") + k);
  }
  for (const auto& [name, mc] : tasks) {
    cols.emplace_back(name + "_acc", "tasks." + name + ".acc");
    if (mc) cols.emplace_back(name + "_acc_norm", "tasks." + name + ".acc_norm");
  }
  return cols;
}

double number(const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }


// Rows grouped by run, in order of first appearance.
std::vector<std::pair<std::string, std::vector<const Row*>>> by_run(const ReportInput& in) {
  std::vector<std::pair<std::string, std::vector<const Row*>>> out;
  for (const auto& r : in.rows) {
    if (out.empty() || out.back().first != r.run) out.push_back({r.run, {}});
    out.back().second.push_back(&r);
  }
  return out;
}

std::string swept_text(const Row& r, const std::vector<std::string>& keys) {
  std::string s;
  for (const auto& k : keys) s += (s.empty() ? "" : ", ") + k.substr(k.rfind('.') + 1) + "=" + value_text(r.swept.value(k, nlohmann::json()));
  return s;
}

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  io::write_file_atomic(path, text);
}

std::string table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows, char sep) {
  std::ostringstream o;
  auto line = [&](const std::vector<std::string>& cells) {
    if (sep == '|') {
      o << "|";
      for (const auto& c : cells) o << " " << c << " |";
    } else {
      for (size_t i = 0; i < cells.size(); ++i) o << (i ? "," : "") << csv_field(cells[i]);
    }
    o << "\n";
  };
  line(header);
  if (sep == '|') line(std::vector<std::string>(header.size(), "---"));
  for (const auto& r : rows) line(r);
  return o.str();
}

std::string mb(const nlohmann::json& bytes) {
  if (!bytes.is_number()) return "";
  char b[32];
  std::snprintf(b, sizeof(b), "%.2f", bytes.get<double>() / 1e6);
  return b;
}

}  // namespace

std::string summary_csv(const ReportInput& in) {
  std::vector<std::string> header = {"run", "stage", "tool"};
  for (const auto& k : in.swept_keys) header.push_back(k);
  for (const char* k : {"perplexity", "num_parameters", "disk_size_bytes", "memory_footprint_bytes", "sparsity",
                        "decode_tokens_per_s"}) {
    header.push_back(k);
  }
  const auto extra = extra_columns(in);
  for (const auto& c : extra) header.push_back(c.first);
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : in.rows) {
    std::vector<std::string> cells = {r.run, r.stage, r.tool};
    for (const auto& k : in.swept_keys) cells.push_back(value_text(r.swept.value(k, nlohmann::json())));
    for (const char* k : {"perplexity", "num_parameters", "disk_size_bytes", "memory_footprint_bytes", "sparsity",
                          "decode_tokens_per_s"}) {
      cells.push_back(value_text(figure(r, k)));
    }
    for (const auto& c : extra) cells.push_back(value_text(figure(r, c.second)));
    rows.push_back(cells);
  }
  return table(header, rows, ',');
}

std::vector<std::string> write_report(const std::string& dir, const ReportInput& in) {
  std::vector<std::string> written;
  const std::string csv = (fs::path(dir) / "summary.csv").string();
  write_text(csv, summary_csv(in));
  written.push_back(csv);

  // Plots.
  const auto runs = by_run(in);
  std::vector<Series> size_ppl, speed, size_kl;
  std::vector<std::string> stage_names;
  for (const auto* r : runs.front().second) stage_names.push_back(r->stage);
  for (const auto& [run, rows] : runs) {
    Series s{run.empty() ? "stages" : run + (in.swept_keys.empty() ? "" : " (" + swept_text(*rows.front(), in.swept_keys) + ")"), {}, {}, true};
    Series d{s.name, {}, {}, true};
    for (size_t i = 0; i < rows.size(); ++i) {
      s.points.emplace_back(number(figure(*rows[i], "disk_size_bytes")) / 1e6, number(figure(*rows[i], "perplexity")));
      s.labels.push_back(rows[i]->stage);
      d.points.emplace_back(static_cast<double>(i), number(figure(*rows[i], "decode_tokens_per_s")));
    }
    size_ppl.push_back(s);
    speed.push_back(d);
    Series k{s.name, {}, {}, false};
    for (const auto* r : rows) {
      const double kl = number(figure(*r, "compare.kl_mean"));
      const double size = number(figure(*r, "disk_size_bytes")) / 1e6;
      if (!(kl > 0) || !std::isfinite(size)) continue;  // the original itself (0) and rows without a comparison
      k.points.emplace_back(size, kl);
      k.labels.push_back(r->stage);
    }
    if (!k.points.empty()) size_kl.push_back(k);
  }
  // Per-layer figures of the first run's stages: x is the decoder layer, one series per stage
  // and Linear ("pruned fc1 sparsity", "nf4 q_proj error").
  static const std::regex kLinear(R"(layers\.([0-9]+)\.(?:self_attn\.)?(.+)$)");
  std::vector<Series> layers;
  int64_t num_layers = 0;
  for (const auto* r : runs.front().second) {
    const nlohmann::json& m = r->stage_metrics;
    const bool prune = m.contains("linears") && m["linears"].is_object();
    const bool quant = m.contains("layers") && m["layers"].is_object();
    if (!prune && !quant) continue;
    const nlohmann::json& per_layer = prune ? m["linears"] : m["layers"];
    const char* figure_name = prune ? "achieved_sparsity" : "relative_error";
    std::map<std::string, std::vector<std::pair<double, double>>> by_linear;
    for (auto it = per_layer.begin(); it != per_layer.end(); ++it) {
      std::smatch match;
      if (!std::regex_search(it.key(), match, kLinear)) continue;
      const int64_t layer = std::stoll(match[1].str());
      num_layers = std::max(num_layers, layer + 1);
      by_linear[match[2].str()].emplace_back(static_cast<double>(layer), number(it.value().value(figure_name, nlohmann::json())));
    }
    for (auto& [linear, points] : by_linear) {
      std::sort(points.begin(), points.end());
      layers.push_back({r->stage + " " + linear + (prune ? " sparsity" : " error"), points, {}, true});
    }
  }
  std::vector<std::string> layer_names;
  for (int64_t i = 0; i < num_layers; ++i) layer_names.push_back(std::to_string(i));
  const fs::path plots = fs::path(dir) / "plots";
  auto plot = [&](const std::string& name, const PlotSpec& spec, const std::vector<Series>& series) {
    const std::string p = (plots / name).string();
    write_text(p, render_svg(spec, series));
    written.push_back(p);
  };
  plot("size_vs_perplexity.svg", {"Size on disk vs held-out perplexity", "size on disk (MB)", "perplexity", {}, true}, size_ppl);
  if (!size_kl.empty()) {
    plot("size_vs_kl.svg", {"Size on disk vs mean KL to the original (nats per token)", "size on disk (MB)", "mean KL(original || model)", {}, true},
         size_kl);
  }
  plot("decode_speed.svg", {"Decode speed per stage (batch 1, KV cache)", "stage", "decode tokens/s", stage_names}, speed);
  if (!layers.empty()) {
    const std::string run = in.rows.front().run;
    plot("per_layer.svg", {"Per-layer sparsity / quantization error" + (run.empty() ? "" : " (" + run + ")"),
                           "decoder layer", "sparsity or relative error", layer_names},
         layers);
  }

  // report.md
  std::ostringstream md;
  md << "# " << in.title << "\n\n";
  md << "Recipe: `" << in.recipe_path << "`. Every model was evaluated with the same library calls as `evaluate` "
     << "on the recipe's eval_file; perplexity and every column are defined in llmc's docs/metrics.md.\n\n";
  const auto extra = extra_columns(in);
  if (!extra.empty() && extra.front().first == "kl_mean") {
    md << "KL columns compare each model's next-token distribution with the original's on the same windows "
       << "(mean and 99th percentile of KL(original || model) in nats per token, top-1 agreement, perplexity ratio).\n\n";
  }
  for (const auto& [run, rows] : runs) {
    if (!run.empty()) md << "## " << run << " (" << swept_text(*rows.front(), in.swept_keys) << ")\n\n";
    std::vector<std::vector<std::string>> t;
    for (const auto* r : rows) {
      std::vector<std::string> cells = {r->stage, r->tool.empty() ? "-" : r->tool, value_text(figure(*r, "perplexity")), mb(figure(*r, "disk_size_bytes")),
                   mb(figure(*r, "memory_footprint_bytes")), value_text(figure(*r, "num_parameters")),
                   value_text(figure(*r, "sparsity")), value_text(figure(*r, "decode_tokens_per_s"))};
      for (const auto& c : extra) cells.push_back(value_text(figure(*r, c.second)));
      cells.push_back("`" + r->path + "`");
      t.push_back(cells);
    }
    std::vector<std::string> header = {"stage", "tool", "perplexity", "disk MB", "memory MB", "parameters", "sparsity", "decode tok/s"};
    for (const auto& c : extra) header.push_back(c.first);
    header.push_back("path");
    md << table(header, t, '|') << "\n";
  }
  md << "## Plots\n\n![size vs perplexity](plots/size_vs_perplexity.svg)\n\n";
  if (!size_kl.empty()) md << "![size vs KL](plots/size_vs_kl.svg)\n\n";
  md << "![decode speed](plots/decode_speed.svg)\n\n";
  if (!layers.empty()) md << "![per layer](plots/per_layer.svg)\n\n";
  md << "Machine-readable: `summary.csv`, `metrics.json`.\n";
  const std::string report = (fs::path(dir) / "report.md").string();
  write_text(report, md.str());
  written.push_back(report);
  return written;
}

std::vector<std::string> write_sweep_tables(const std::string& dir, const ReportInput& in) {
  // Each table: its columns, and one ratio of a row against its run's original.
  struct Table {
    const char* name;
    std::vector<const char*> columns;
    const char* ratio;
    std::function<double(const Row& row, const Row& original)> ratio_of;
  };
  auto n = [](const Row& r, const char* key) { return number(figure(r, key)); };
  const std::vector<Table> tables = {
      {"compression_ratios", {"num_parameters", "disk_size_bytes", "memory_footprint_bytes", "sparsity"}, "compression_ratio",
       [n](const Row& r, const Row& o) { return n(o, "disk_size_bytes") / n(r, "disk_size_bytes"); }},
      {"performance_comparison", {"prefill_tokens_per_s", "decode_tokens_per_s", "memory_footprint_bytes"}, "decode_speedup",
       [n](const Row& r, const Row& o) { return n(r, "decode_tokens_per_s") / n(o, "decode_tokens_per_s"); }},
      {"accuracy_tradeoffs", {"perplexity", "disk_size_bytes", "sparsity"}, "perplexity_ratio",
       [n](const Row& r, const Row& o) { return n(r, "perplexity") / n(o, "perplexity"); }}};
  std::map<std::string, const Row*> originals;
  for (const auto& r : in.rows) {
    if (r.stage == "original" && !originals.count(r.run)) originals[r.run] = &r;
  }
  std::vector<std::string> written;
  for (const auto& t : tables) {
    std::vector<std::string> header = {"run", "stage", "tool"};
    for (const auto& k : in.swept_keys) header.push_back(k);
    for (const char* c : t.columns) header.push_back(c);
    header.push_back(t.ratio);
    std::vector<std::vector<std::string>> rows;
    nlohmann::json json_rows = nlohmann::json::array();
    for (const auto& r : in.rows) {
      std::vector<std::string> cells = {r.run, r.stage, r.tool};
      nlohmann::json jr = {{"run", r.run}, {"stage", r.stage}, {"tool", r.tool}, {"swept", r.swept}};
      for (const auto& k : in.swept_keys) cells.push_back(value_text(r.swept.value(k, nlohmann::json())));
      for (const char* c : t.columns) {
        cells.push_back(value_text(figure(r, c)));
        jr[c] = figure(r, c);
      }
      const double v = originals.count(r.run) ? t.ratio_of(r, *originals.at(r.run)) : std::nan("");
      cells.push_back(std::isfinite(v) ? value_text(v) : "");
      jr[t.ratio] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
      rows.push_back(cells);
      json_rows.push_back(jr);
    }
    const fs::path base = fs::path(dir) / t.name;
    write_text(base.string() + ".csv", table(header, rows, ','));
    write_text(base.string() + ".json", json_rows.dump(2) + "\n");
    written.push_back(base.string() + ".csv");
    written.push_back(base.string() + ".json");
  }
  return written;
}

}  // namespace llmc::report
