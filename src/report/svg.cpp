#include "llmc/report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace llmc::report {

namespace {

// Twelve distinguishable colours; beyond them the same colours again with dashed lines.
const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                         "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"};
const char* kDashes[] = {"", "6,3", "2,2"};
constexpr size_t kNumColors = sizeof(kColors) / sizeof(kColors[0]);

struct Style {
  std::string color;
  std::string dash;  // stroke-dasharray, "" for a solid line
};

Style style_of(size_t series_index) {
  return {kColors[series_index % kNumColors], kDashes[(series_index / kNumColors) % 3]};
}

std::string dash_attr(const Style& st) { return st.dash.empty() ? "" : " stroke-dasharray=\"" + st.dash + "\""; }

constexpr double kFont = 12, kTitleFont = 15, kLabelFont = 10;

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.1f", v);
  return b;
}

std::string tick_label(double v) {
  char b[32];
  if (v != 0 && (std::abs(v) >= 1e6 || std::abs(v) < 1e-3)) std::snprintf(b, sizeof(b), "%.2g", v);
  else std::snprintf(b, sizeof(b), "%g", v);
  return b;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// The first `chars` characters of s (UTF-8), with an ellipsis when cut.
std::string truncated(const std::string& s, size_t chars) {
  if (utf8_length(s) <= chars) return s;
  std::string out;
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) != 0x80 && ++n > (chars > 0 ? chars - 1 : 0)) break;
    out += s[i];
  }
  return out + "\xE2\x80\xA6";
}

struct Box {
  double x0, y0, x1, y1;
  bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
  bool inside(const Box& o) const { return x0 >= o.x0 && x1 <= o.x1 && y0 >= o.y0 && y1 <= o.y1; }
};

// The box of a text line with its baseline at y (see text_width()).
Box text_box(double x, double y, const std::string& s, double font, const char* anchor) {
  const double w = text_width(s, font);
  const double x0 = anchor[0] == 's' ? x : anchor[0] == 'm' ? x - w / 2 : x - w;
  return {x0, y - 0.8 * font, x0 + w, y + 0.2 * font};
}

class Writer {
 public:
  void text(double x, double y, const std::string& s, double font, const char* anchor, const std::string& extra = "") {
    o_ << "<text x=\"" << num(x) << "\" y=\"" << num(y) << "\" font-size=\"" << font << "\" text-anchor=\"" << anchor << "\""
       << extra << ">" << escape(s) << "</text>\n";
  }
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1) {
    o_ << "<line x1=\"" << num(x1) << "\" y1=\"" << num(y1) << "\" x2=\"" << num(x2) << "\" y2=\"" << num(y2)
       << "\" stroke=\"" << stroke << "\" stroke-width=\"" << width << "\"/>\n";
  }
  std::ostringstream& raw() { return o_; }

 private:
  std::ostringstream o_;
};

// Where the legend goes: beside the plot when it fits there, else below it in columns.
struct LegendLayout {
  bool below{false};
  double entry_width{0};  // swatch + gap + text
  int columns{1};
  int rows{0};
  size_t max_chars{0};
};

}  // namespace

double text_width(const std::string& s, double font_size) {
  return static_cast<double>(utf8_length(s)) * 0.6 * font_size;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  }
  std::vector<double> ticks;
  for (double v = std::floor(lo / step) * step; v <= hi + step * 0.5 && ticks.size() < 64; v += step) {
    ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  }
  return ticks;
}

std::vector<double> log_ticks(double lo, double hi) {
  if (!(lo > 0) || !std::isfinite(lo) || !std::isfinite(hi)) return {1, 10};
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) hi = lo * 1.5;  // one value: the ticks around it
  const int k0 = static_cast<int>(std::floor(std::log10(lo))) - 1, k1 = static_cast<int>(std::ceil(std::log10(hi))) + 1;
  const std::vector<std::vector<double>> mantissas = {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  std::vector<double> ticks;
  for (const auto& ms : mantissas) {
    std::vector<double> all;
    for (int k = k0; k <= k1; ++k) {
      for (double m : ms) all.push_back(m * std::pow(10.0, k));
    }
    // From the largest tick at or below lo to the smallest at or above hi (the axis covers them).
    size_t a = 0, b = all.size() - 1;
    while (a + 1 < all.size() && all[a + 1] <= lo * (1 + 1e-12)) ++a;
    while (b > 0 && all[b - 1] >= hi * (1 - 1e-12)) --b;
    ticks.assign(all.begin() + static_cast<std::ptrdiff_t>(a), all.begin() + static_cast<std::ptrdiff_t>(b) + 1);
    if (ticks.size() >= 3) break;
  }
  // Many decades: every n-th power of ten, at most about 8 ticks.
  const size_t stride = (ticks.size() + 7) / 8;
  if (stride > 1) {
    std::vector<double> thin;
    for (size_t i = 0; i < ticks.size(); i += stride) thin.push_back(ticks[i]);
    if (thin.back() != ticks.back()) thin.push_back(ticks.back());
    ticks = thin;
  }
  return ticks;
}

std::string render_svg(const PlotSpec& spec, const std::vector<Series>& series) {
  const bool categorical = !spec.x_categories.empty();
  auto usable = [&](double x, double y) { return std::isfinite(x) && std::isfinite(y) && !(spec.log_y && y <= 0); };

  // Data range and ticks.
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points) {
      if (!usable(x, y)) continue;
      xmin = std::min(xmin, x), xmax = std::max(xmax, x), ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
  }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = spec.log_y ? 1 : 0, ymax = spec.log_y ? 10 : 1;
  if (categorical) xmin = -0.5, xmax = static_cast<double>(spec.x_categories.size()) - 0.5;
  const std::vector<double> xt = categorical ? std::vector<double>{} : nice_ticks(xmin, xmax, 6);
  const std::vector<double> yt = spec.log_y ? log_ticks(ymin, ymax) : nice_ticks(ymin, ymax, 6);
  auto ty = [&](double y) { return spec.log_y ? std::log10(y) : y; };
  if (!xt.empty()) xmin = std::min(xmin, xt.front()), xmax = std::max(xmax, xt.back());
  double yl = ty(ymin), yh = ty(ymax);
  if (!yt.empty()) yl = std::min(yl, ty(yt.front())), yh = std::max(yh, ty(yt.back()));
  if (xmax == xmin) xmax = xmin + 1;
  if (yh == yl) yh = yl + 1;

  // Margins: the y tick labels and the rotated y label on the left; the legend beside or below.
  double widest_tick = 0;
  for (double t : yt) widest_tick = std::max(widest_tick, text_width(tick_label(t), kFont));
  const double left = 30 + widest_tick;
  const double W = spec.width;
  double right = 20, bottom = 60;
  const double top = 40;
  LegendLayout legend;
  {
    size_t longest = 0;
    for (const auto& s : series) longest = std::max(longest, utf8_length(s.name));
    legend.max_chars = std::min<size_t>(longest, static_cast<size_t>((W - 60) / (0.6 * kFont)));
    legend.entry_width = 15 + text_width(std::string(legend.max_chars, 'x'), kFont);
    const double side_width = legend.entry_width + 25;
    const double plot_height = spec.height - top - bottom;
    legend.below = side_width > 0.4 * W || 18.0 * static_cast<double>(series.size()) > plot_height;
    if (legend.below) {
      legend.columns = std::max(1, static_cast<int>((W - 20) / (legend.entry_width + 20)));
      legend.rows = static_cast<int>((series.size() + static_cast<size_t>(legend.columns) - 1) / static_cast<size_t>(legend.columns));
      bottom += 18.0 * legend.rows + 6;
    } else if (!series.empty()) {
      right = side_width;
    }
  }
  const double H = spec.height + (legend.below ? 18.0 * legend.rows + 6 : 0);
  const double w = W - left - right, h = H - top - bottom;
  auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * w; };
  auto py = [&](double y) { return top + h - (ty(y) - yl) / (yh - yl) * h; };

  Writer o;
  o.raw() << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
          << "\" font-family=\"sans-serif\" font-size=\"" << kFont << "\">\n";
  o.raw() << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o.text(W / 2, 22, truncated(spec.title, static_cast<size_t>((W - 20) / (0.6 * kTitleFont))), kTitleFont, "middle");

  // Axes, grid and ticks.
  o.line(left, top + h, left + w, top + h, "black");
  o.line(left, top, left, top + h, "black");
  for (double t : yt) {
    const double y = py(t);
    o.line(left - 4, y, left + w, y, "#ddd");
    o.text(left - 7, y + 4, tick_label(t), kFont, "end");
  }
  if (categorical) {
    // Thin the category labels so that neighbours never touch.
    const double spacing = w / static_cast<double>(spec.x_categories.size());
    double widest = 0;
    for (const auto& c : spec.x_categories) widest = std::max(widest, text_width(c, kFont));
    const size_t stride = std::max<size_t>(1, static_cast<size_t>(std::ceil((widest + 6) / spacing)));
    for (size_t i = 0; i < spec.x_categories.size(); ++i) {
      const double x = px(static_cast<double>(i));
      o.line(x, top + h, x, top + h + 4, "black");
      if (i % stride == 0) o.text(x, top + h + 18, spec.x_categories[i], kFont, "middle");
    }
  } else {
    for (double t : xt) {
      const double x = px(t);
      o.line(x, top + h, x, top + h + 4, "black");
      o.text(x, top + h + 18, tick_label(t), kFont, "middle");
    }
  }
  o.text(left + w / 2, top + h + 40, spec.x_label, kFont, "middle");
  o.raw() << "<text transform=\"translate(16," << num(top + h / 2) << ") rotate(-90)\" font-size=\"" << kFont
          << "\" text-anchor=\"middle\">"
          << escape(truncated(spec.y_label + (spec.log_y ? " (log scale)" : ""), static_cast<size_t>(h / (0.6 * kFont))))
          << "</text>\n";

  // Series: lines and points first, then the point labels placed where they collide with
  // nothing (else moved aside along a leader line), then the legend.
  const Box area{left + 2, top + 2, left + w - 2, top + h - 2};
  std::vector<Box> placed;
  struct Label {
    double x, y;
    std::string text, color;
    bool leader;
    double px, py;
  };
  std::vector<Label> labels;
  for (size_t si = 0; si < series.size(); ++si) {
    const auto& s = series[si];
    const Style st = style_of(si);
    const std::string& color = st.color;
    std::vector<std::pair<double, double>> pts;
    std::vector<std::string> texts;
    for (size_t i = 0; i < s.points.size(); ++i) {
      const auto& [x, y] = s.points[i];
      if (!usable(x, y)) continue;
      pts.emplace_back(px(x), py(y));
      texts.push_back(i < s.labels.size() ? s.labels[i] : std::string());
    }
    if (s.line && pts.size() > 1) {
      o.raw() << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\"" << dash_attr(st) << " points=\"";
      for (const auto& [x, y] : pts) o.raw() << num(x) << "," << num(y) << " ";
      o.raw() << "\"/>\n";
    }
    for (size_t i = 0; i < pts.size(); ++i) {
      const auto [x, y] = pts[i];
      o.raw() << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"3.5\" fill=\"" << color << "\"/>\n";
      if (texts[i].empty()) continue;
      const std::string t = truncated(texts[i], 40);
      const double tw = text_width(t, kLabelFont);
      std::vector<std::pair<double, double>> tries = {{x + 6, y - 6}, {x + 6, y + 13}, {x - 6 - tw, y - 6},
                                                      {x - 6 - tw, y + 13}, {x - tw / 2, y - 9}, {x - tw / 2, y + 17}};
      bool leader = false;
      std::pair<double, double> at{x + 6, y - 6};
      bool found = false;
      for (int k = 0; k < 64 && !found; ++k) {
        if (k == static_cast<int>(tries.size())) leader = true;
        if (leader) {
          // Further away, alternately above and below, on either side, joined by a line.
          const int step = (k - static_cast<int>(tries.size())) / 4 + 2;
          const int variant = (k - static_cast<int>(tries.size())) % 4;
          const double dy = (variant % 2 == 0 ? -1 : 1) * 13.0 * step;
          const double dx = variant < 2 ? 16 : -16 - tw;
          tries.emplace_back(x + dx, y + dy);
        }
        const auto& [cx, cy] = tries[static_cast<size_t>(k)];
        const Box b = text_box(cx, cy, t, kLabelFont, "start");
        if (!b.inside(area)) continue;
        if (std::any_of(placed.begin(), placed.end(), [&](const Box& p) { return p.overlaps(b); })) continue;
        at = {cx, cy};
        found = true;
      }
      if (!found) continue;  // no free place in the plot: the legend and the table name the point
      placed.push_back(text_box(at.first, at.second, t, kLabelFont, "start"));
      labels.push_back({at.first, at.second, t, color, leader, x, y});
    }
  }
  for (const auto& l : labels) {
    if (l.leader) {
      const double lx = l.x < l.px ? l.x + text_width(l.text, kLabelFont) : l.x;
      o.line(l.px, l.py, lx, l.y - 3, l.color, 0.6);
    }
    o.text(l.x, l.y, l.text, kLabelFont, "start", " fill=\"" + l.color + "\"");
  }
  for (size_t si = 0; si < series.size(); ++si) {
    const Style st = style_of(si);
    double lx, ly;
    if (legend.below) {
      const int col = static_cast<int>(si) % legend.columns, row = static_cast<int>(si) / legend.columns;
      lx = 10 + col * (legend.entry_width + 20);
      ly = top + h + 58 + 18.0 * row;
    } else {
      lx = left + w + 15;
      ly = top + 10 + 18.0 * static_cast<double>(si);
    }
    o.raw() << "<line x1=\"" << num(lx - 2) << "\" y1=\"" << num(ly - 4) << "\" x2=\"" << num(lx + 12) << "\" y2=\""
            << num(ly - 4) << "\" stroke=\"" << st.color << "\" stroke-width=\"2\"" << dash_attr(st) << "/>\n";
    o.raw() << "<circle cx=\"" << num(lx + 5) << "\" cy=\"" << num(ly - 4) << "\" r=\"3\" fill=\"" << st.color << "\"/>\n";
    o.text(lx + 15, ly, truncated(series[si].name, legend.max_chars), kFont, "start");
  }
  o.raw() << "</svg>\n";
  return o.raw().str();
}

}  // namespace llmc::report
