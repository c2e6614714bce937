// A small SVG line/point plot writer: axes, "nice" ticks, lines, points, labels and a legend;
// a numeric or a categorical x axis, an optional log-scale y axis. Nothing else.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace llmc::report {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y); for a categorical axis x is the category index
  std::vector<std::string> labels;                // optional, one per point
  bool line{true};
};

struct PlotSpec {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<std::string> x_categories;  // non-empty: categorical x axis
  bool log_y{false};
  int width{720};
  int height{440};
};

std::string render_svg(const PlotSpec& spec, const std::vector<Series>& series);

// About `target` round tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^k).
std::vector<double> nice_ticks(double lo, double hi, int target);

}  // namespace llmc::report
