#include "llmc/report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace llmc::report {

namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

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

}  // namespace

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

std::string render_svg(const PlotSpec& spec, const std::vector<Series>& series) {
  const double left = 80, right = 170, top = 40, bottom = 60;
  const double w = spec.width - left - right, h = spec.height - top - bottom;
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y) || (spec.log_y && y <= 0)) continue;
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x);
      const double yy = spec.log_y ? std::log10(y) : y;
      ymin = std::min(ymin, yy);
      ymax = std::max(ymax, yy);
    }
  }
  const bool categorical = !spec.x_categories.empty();
  if (categorical) {
    xmin = -0.5;
    xmax = static_cast<double>(spec.x_categories.size()) - 0.5;
  }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  std::vector<double> xt = categorical ? std::vector<double>{} : nice_ticks(xmin, xmax, 6);
  std::vector<double> yt = spec.log_y ? nice_ticks(std::floor(ymin), std::ceil(ymax), 5) : nice_ticks(ymin, ymax, 6);
  if (!xt.empty()) xmin = std::min(xmin, xt.front()), xmax = std::max(xmax, xt.back());
  if (!yt.empty()) ymin = std::min(ymin, yt.front()), ymax = std::max(ymax, yt.back());
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax == ymin) ymax = ymin + 1;
  auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * w; };
  auto py = [&](double y) { return top + h - ((spec.log_y ? std::log10(y) : y) - ymin) / (ymax - ymin) * h; };
  auto py_raw = [&](double yy) { return top + h - (yy - ymin) / (ymax - ymin) * h; };

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << spec.width << "\" height=\"" << spec.height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << num(left + w / 2) << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << escape(spec.title)
    << "</text>\n";
  // Axes and ticks.
  o << "<line x1=\"" << num(left) << "\" y1=\"" << num(top + h) << "\" x2=\"" << num(left + w) << "\" y2=\"" << num(top + h)
    << "\" stroke=\"black\"/>\n";
  o << "<line x1=\"" << num(left) << "\" y1=\"" << num(top) << "\" x2=\"" << num(left) << "\" y2=\"" << num(top + h)
    << "\" stroke=\"black\"/>\n";
  for (double t : yt) {
    const double y = py_raw(t);
    o << "<line x1=\"" << num(left - 4) << "\" y1=\"" << num(y) << "\" x2=\"" << num(left + w) << "\" y2=\"" << num(y)
      << "\" stroke=\"#ddd\"/>\n";
    o << "<text x=\"" << num(left - 7) << "\" y=\"" << num(y + 4) << "\" text-anchor=\"end\">"
      << tick_label(spec.log_y ? std::pow(10.0, t) : t) << "</text>\n";
  }
  if (categorical) {
    for (size_t i = 0; i < spec.x_categories.size(); ++i) {
      const double x = px(static_cast<double>(i));
      o << "<line x1=\"" << num(x) << "\" y1=\"" << num(top + h) << "\" x2=\"" << num(x) << "\" y2=\"" << num(top + h + 4)
        << "\" stroke=\"black\"/>\n";
      o << "<text x=\"" << num(x) << "\" y=\"" << num(top + h + 18) << "\" text-anchor=\"middle\">"
        << escape(spec.x_categories[i]) << "</text>\n";
    }
  } else {
    for (double t : xt) {
      const double x = px(t);
      o << "<line x1=\"" << num(x) << "\" y1=\"" << num(top + h) << "\" x2=\"" << num(x) << "\" y2=\"" << num(top + h + 4)
        << "\" stroke=\"black\"/>\n";
      o << "<text x=\"" << num(x) << "\" y=\"" << num(top + h + 18) << "\" text-anchor=\"middle\">" << tick_label(t)
        << "</text>\n";
    }
  }
  o << "<text x=\"" << num(left + w / 2) << "\" y=\"" << num(spec.height - 15) << "\" text-anchor=\"middle\">"
    << escape(spec.x_label) << "</text>\n";
  o << "<text transform=\"translate(18," << num(top + h / 2) << ") rotate(-90)\" text-anchor=\"middle\">"
    << escape(spec.y_label) << (spec.log_y ? " (log scale)" : "") << "</text>\n";
  // Series: lines, points, point labels, legend.
  for (size_t si = 0; si < series.size(); ++si) {
    const auto& s = series[si];
    const std::string color = kColors[si % (sizeof(kColors) / sizeof(kColors[0]))];
    std::vector<std::pair<double, double>> pts;
    for (const auto& [x, y] : s.points) {
      if (std::isfinite(x) && std::isfinite(y) && !(spec.log_y && y <= 0)) pts.emplace_back(px(x), py(y));
    }
    if (s.line && pts.size() > 1) {
      o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"";
      for (const auto& [x, y] : pts) o << num(x) << "," << num(y) << " ";
      o << "\"/>\n";
    }
    for (size_t i = 0; i < pts.size(); ++i) {
      o << "<circle cx=\"" << num(pts[i].first) << "\" cy=\"" << num(pts[i].second) << "\" r=\"3.5\" fill=\"" << color
        << "\"/>\n";
      if (i < s.labels.size() && !s.labels[i].empty()) {
        o << "<text x=\"" << num(pts[i].first + 6) << "\" y=\"" << num(pts[i].second - 6) << "\" font-size=\"10\" fill=\""
          << color << "\">" << escape(s.labels[i]) << "</text>\n";
      }
    }
    const double ly = top + 10 + 18 * static_cast<double>(si);
    o << "<rect x=\"" << num(left + w + 15) << "\" y=\"" << num(ly - 8) << "\" width=\"10\" height=\"10\" fill=\"" << color
      << "\"/>\n";
    o << "<text x=\"" << num(left + w + 30) << "\" y=\"" << num(ly + 1) << "\">" << escape(s.name) << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace llmc::report
