// A small SVG line/point plot writer: axes, "nice" ticks, lines, points, labels and a legend;
// a numeric or a categorical x axis, an optional log-scale y axis. Nothing else.
// Layout rules: point labels never overlap one another (a label that finds no free place next
// to its point is moved aside and joined to it by a leader line), the legend sits beside the
// plot when it fits and below it in columns otherwise, category labels are thinned so that
// neighbours never touch, and every text stays inside the canvas. Text is measured as 0.6 em
// per character, the advance of an average sans-serif glyph.
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

// Ticks of a log axis covering [lo, hi] (lo > 0): powers of ten when they give three ticks or
// more, else 1-2-5 x 10^k, else 1..9 x 10^k; from the tick at or below lo to the one at or
// above hi.
std::vector<double> log_ticks(double lo, double hi);

// The width the layout assumes for a line of text.
double text_width(const std::string& text, double font_size);

}  // namespace llmc::report
