// Reports and plots: log-axis ticks, and the geometry of rendered SVGs (no overlapping text,
// everything inside the canvas; checked by tests/svg_geometry.py) on inputs that used to break
// the layout: coincident labelled points, long series names, many series, many categories.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "llmc/report/report.h"
#include "llmc/report/svg.h"
#include "test_util.h"

using namespace llmc;
using report::PlotSpec;
using report::Series;

namespace {

// Runs tests/svg_geometry.py on the files; returns its exit status (0: no problem) and prints
// what it found.
int geometry_problems(const std::vector<std::string>& files) {
  const char* src = std::getenv("LLMC_SOURCE_DIR");
  if (src == nullptr) throw std::runtime_error("run through ctest (LLMC_SOURCE_DIR)");
  std::string cmd = std::string("/usr/bin/python3 ") + src + "/tests/svg_geometry.py";
  for (const auto& f : files) cmd += " '" + f + "'";
  return std::system(cmd.c_str());
}

std::string write(const test::TempDir& dir, const std::string& name, const std::string& svg) {
  const std::string path = dir / name;
  std::ofstream(path) << svg;
  return path;
}

}  // namespace

TEST(Svg, LogTicksAreRound) {
  EXPECT_EQ(report::log_ticks(427, 823), (std::vector<double>{200, 500, 1000}));
  EXPECT_EQ(report::log_ticks(3, 2000), (std::vector<double>{1, 10, 100, 1000, 10000}));
  EXPECT_EQ(report::log_ticks(427.0, 441.5), (std::vector<double>{400, 500}));
  EXPECT_EQ(report::log_ticks(100, 100), (std::vector<double>{100, 200}));
  for (double t : report::log_ticks(1e-3, 1e12)) {
    const double mantissa = t / std::pow(10.0, std::floor(std::log10(t) + 1e-9));
    EXPECT_NEAR(mantissa, 1.0, 1e-9) << t;  // many decades: powers of ten only
  }
  EXPECT_LE(report::log_ticks(1e-3, 1e12).size(), 9u);
}

TEST(Svg, LabelsOfCoincidentPointsDoNotOverlap) {
  test::TempDir tmp;
  // The demo's case: "trained" and "pruned" at the same size and nearly the same perplexity,
  // plus a cluster of quantized variants.
  Series run{"stages", {{5.6, 427.01}, {5.6, 427.02}, {5.6, 427.03}, {1.83, 427.02}, {1.83, 427.24}, {1.81, 427.09}, {1.76, 721.1}},
             {"trained", "pruned", "pruned-again", "nf4", "fp4", "rtn", "student"}, true};
  const std::string svg = report::render_svg({"Size on disk vs held-out perplexity", "size on disk (MB)", "perplexity", {}, true}, {run});
  EXPECT_EQ(geometry_problems({write(tmp, "coincident.svg", svg)}), 0);
  for (const char* label : {"trained", "pruned", "nf4", "fp4", "rtn", "student"}) {
    EXPECT_NE(svg.find(std::string(">") + label + "<"), std::string::npos) << label;
  }
  EXPECT_NE(svg.find(">500<"), std::string::npos);  // 1-2-5 ticks, no 630.957
  EXPECT_EQ(svg.find("630.9"), std::string::npos);
}

TEST(Svg, LegendsFitWhateverTheirLength) {
  test::TempDir tmp;
  std::vector<Series> few, many;
  for (int i = 0; i < 3; ++i) {
    few.push_back({"run-" + std::to_string(i + 1) + " (stages.0.options.pruning_ratio=0." + std::to_string(i) +
                       ", stages.2.options.quantization_bits=4, a very long swept value)",
                   {{1.0 + i, 2.0 + i}}, {}, true});
  }
  for (int i = 0; i < 30; ++i) many.push_back({"nf4 self_attn.q_proj relative error " + std::to_string(i), {{0, i * 0.01}}, {}, true});
  const auto a = write(tmp, "long.svg", report::render_svg({"t", "x", "y", {}}, few));
  const auto b = write(tmp, "many.svg", report::render_svg({"t", "x", "y", {}}, many));
  EXPECT_EQ(geometry_problems({a, b}), 0);
}

TEST(Svg, CategoryLabelsAreThinnedNotOverlapped) {
  test::TempDir tmp;
  std::vector<std::string> cats;
  for (int i = 0; i < 48; ++i) cats.push_back("layer-" + std::to_string(i));
  Series s{"speed", {}, {}, true};
  for (int i = 0; i < 48; ++i) s.points.emplace_back(i, 10.0 + i);
  const std::string svg = report::render_svg({"Decode speed", "stage", "tokens/s", cats}, {s});
  EXPECT_EQ(geometry_problems({write(tmp, "cats.svg", svg)}), 0);
  EXPECT_NE(svg.find(">layer-0<"), std::string::npos);
}

TEST(Report, PerLayerPlotNamesLayersAndLinears) {
  test::TempDir tmp;
  report::ReportInput in;
  in.title = "t";
  in.recipe_path = "r.json";
  report::Row original{"", "original", "", "/m", nlohmann::json::object(), {{"perplexity", 430.0}, {"disk_size_bytes", 5.6e6}}, {}};
  report::Row pruned = original;
  pruned.stage = "pruned";
  pruned.tool = "prune";
  pruned.evaluation["perplexity"] = 431.0;
  for (int layer = 0; layer < 4; ++layer) {
    for (const char* linear : {"self_attn.q_proj", "fc1"}) {
      pruned.stage_metrics["linears"]["model.decoder.layers." + std::to_string(layer) + "." + linear] = {
          {"achieved_sparsity", 0.5 + 0.01 * layer}};
    }
  }
  in.rows = {original, pruned};
  report::write_report(tmp.path(), in);
  std::ifstream f(tmp / "plots/per_layer.svg");
  const std::string svg((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(svg.find(">decoder layer<"), std::string::npos);
  EXPECT_NE(svg.find(">pruned q_proj sparsity<"), std::string::npos);
  EXPECT_NE(svg.find(">pruned fc1 sparsity<"), std::string::npos);
  for (int layer = 0; layer < 4; ++layer) EXPECT_NE(svg.find(">" + std::to_string(layer) + "<"), std::string::npos);
  EXPECT_EQ(geometry_problems({tmp / "plots/per_layer.svg", tmp / "plots/size_vs_perplexity.svg", tmp / "plots/decode_speed.svg"}), 0);
}

// The comparison with the original and the task accuracies become columns when any row has
// them; a row without them leaves the cells empty; a task name may hold dots.
TEST(Report, CompareAndTaskColumns) {
  report::ReportInput in;
  report::Row original;
  original.stage = "original";
  original.evaluation = {{"perplexity", 10.0}, {"tasks", {{"my.cloze", {{"acc", 0.5}, {"target_perplexity", 9.0}}}}}};
  report::Row q;
  q.stage = "nf4";
  q.tool = "quantize";
  q.evaluation = {{"perplexity", 10.5}, {"disk_size_bytes", 1000000},
                  {"compare", {{"kl_mean", 0.0125}, {"kl_p99", 0.25}, {"top1_agreement", 0.75}, {"perplexity_ratio", 1.05}}},
                  {"tasks", {{"my.cloze", {{"acc", 0.25}}}, {"mc", {{"acc", 0.5}, {"acc_norm", 0.625}}}}}};
  in.rows = {original, q};
  const std::string csv = report::summary_csv(in);
  const std::string header = csv.substr(0, csv.find('\n'));
  EXPECT_NE(header.find(",kl_mean,kl_p99,top1_agreement,perplexity_ratio,mc_acc,mc_acc_norm,my.cloze_acc"), std::string::npos) << header;
  EXPECT_NE(csv.find("\n,original,,10,,,,,,,,,,,,0.5\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("nf4,quantize,10.5,,1000000,,,,0.0125,0.25,0.75,1.05,0.5,0.625,0.25"), std::string::npos) << csv;
  test::TempDir dir;
  in.title = "t";
  const auto files = report::write_report(dir.path(), in);
  EXPECT_TRUE(std::filesystem::exists(dir / "plots/size_vs_kl.svg"));
}
