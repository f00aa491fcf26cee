#include "server/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>

#include "common/number_text.h"

namespace madam::server {
namespace {

// Margins inside each panel, in pixels: room for tick labels and axis labels.
constexpr int kMarginLeft = 62;
constexpr int kMarginRight = 18;
constexpr int kMarginTop = 28;
constexpr int kMarginBottom = 46;
constexpr int kTitleHeight = 34;   // document title
constexpr int kLegendHeight = 26;  // one legend row above the panels
constexpr int kFooterLine = 15;
constexpr int kYTicks = 5;

// Colour-blind-safe (Okabe-Ito) palette, cycled.
const char* const kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                "#E69F00", "#56B4E9", "#F0E442", "#000000"};

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// Short enough to fit the left margin: whole numbers from 100 up, three
// significant digits below (1289, 14.7, 0.468, 0.0001).
std::string TickLabel(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::fabs(v) >= 100 ? "%.0f" : "%.3g", v);
  return buf;
}

// Tick positions at round values (1, 2 or 5 times a power of ten apart)
// inside [lo, hi], about `target` of them; the ends themselves when the
// range is empty. Round steps keep labels short: 500, 1000, 1500 rather
// than 469, 938, 1407.
std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target - 1);
  const double base = std::pow(10.0, std::floor(std::log10(raw)));
  // The round step whose tick count comes closest to the target.
  double step = base;
  double best_miss = std::numeric_limits<double>::infinity();
  for (double m : {0.5, 1.0, 2.0, 5.0, 10.0}) {
    const double candidate = m * base;
    const double count = std::floor(hi / candidate + 1e-9) - std::ceil(lo / candidate - 1e-9) + 1;
    const double miss = std::fabs(count - target);
    if (miss < best_miss) {
      best_miss = miss;
      step = candidate;
    }
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  }
  if (ticks.size() < 2) ticks = {lo, hi};
  return ticks;
}

struct Domain {
  double lo = 0, hi = 1;  // in axis units (log10 x when log_x)
};

// Maps a value in [d.lo, d.hi] onto [p0, p1].
double Map(double v, const Domain& d, double p0, double p1) {
  if (d.hi == d.lo) return (p0 + p1) / 2;
  return p0 + (v - d.lo) / (d.hi - d.lo) * (p1 - p0);
}

}  // namespace

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string RenderLinePlot(const std::vector<PlotPanel>& panels, const LinePlotOptions& options) {
  const bool log_x = options.log_x;
  auto x_of = [log_x](double x) { return log_x ? std::log10(x) : x; };
  auto usable = [log_x](const PlotPoint& p) { return std::isfinite(p.x) && (!log_x || p.x > 0); };

  // One x and y domain for every panel, so panels compare at a glance.
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin;
  double ymin = xmin, ymax = -xmin;
  std::map<std::string, size_t> colour;  // series name -> palette index
  std::vector<std::string> legend;
  std::map<std::string, bool> dashed;    // legend name -> drawn dashed
  auto colour_key = [](const PlotSeries& s) { return s.colour_of.empty() ? s.name : s.colour_of; };
  for (const PlotPanel& panel : panels) {
    for (const PlotSeries& s : panel.series) {
      colour.emplace(colour_key(s), colour.size());
      if (dashed.emplace(s.name, s.dashed).second) legend.push_back(s.name);
      for (const PlotPoint& p : s.points) {
        if (!usable(p)) continue;
        xmin = std::min(xmin, x_of(p.x));
        xmax = std::max(xmax, x_of(p.x));
        if (std::isfinite(p.y)) {
          ymin = std::min(ymin, p.y);
          ymax = std::max(ymax, p.y);
        }
      }
    }
  }
  Domain xd, yd;
  if (std::isfinite(xmin)) {
    xd = log_x ? Domain{std::floor(xmin), std::ceil(xmax)} : Domain{xmin, xmax};
    if (xd.hi == xd.lo) xd = log_x ? Domain{xd.lo - 1, xd.hi + 1} : Domain{xd.lo - 1, xd.hi + 1};
  }
  if (std::isfinite(ymin)) yd = Domain{ymin, ymax};
  if (options.y_min) yd.lo = *options.y_min;
  if (options.y_max) yd.hi = *options.y_max;
  if (yd.hi <= yd.lo) yd.hi = yd.lo + 1;

  const int columns = std::max(1, options.columns);
  const int n = static_cast<int>(panels.size());
  const int cols = std::max(1, std::min(columns, n));
  const int rows = std::max(1, (n + columns - 1) / columns);
  const int top = (options.title.empty() ? 8 : kTitleHeight) + kLegendHeight;
  // Wide enough for the footer lines too (about 6 px per 10 px character).
  size_t longest = 0;
  for (const std::string& line : options.footer) longest = std::max(longest, line.size());
  const int width = std::max(cols * options.panel_width, 16 + 6 * static_cast<int>(longest));
  const int height = top + rows * options.panel_height + 10 +
                     static_cast<int>(options.footer.size()) * kFooterLine;

  std::ostringstream svg;
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << ' ' << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect class=\"background\" x=\"0\" y=\"0\" width=\"" << width << "\" height=\"" << height
      << "\" fill=\"white\"/>\n";
  if (!options.title.empty()) {
    svg << "<text class=\"title\" x=\"" << width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"16\">"
        << XmlEscape(options.title) << "</text>\n";
  }

  // Legend: one entry per series name, then the marker.
  {
    const int ly = top - kLegendHeight / 2;
    int lx = kMarginLeft;
    svg << "<g class=\"legend\">\n";
    std::map<std::string, std::string> key_of;  // legend name -> colour key
    for (const PlotPanel& panel : panels) {
      for (const PlotSeries& s : panel.series) key_of.emplace(s.name, colour_key(s));
    }
    for (const std::string& name : legend) {
      const char* c = kPalette[colour[key_of[name]] % std::size(kPalette)];
      svg << "<g class=\"legend-entry\" data-series=\"" << XmlEscape(name) << "\">"
          << "<line x1=\"" << lx << "\" y1=\"" << ly << "\" x2=\"" << lx + 22 << "\" y2=\"" << ly
          << "\" stroke=\"" << c << "\" stroke-width=\"2\""
          << (dashed[name] ? " stroke-dasharray=\"6 4\"" : "") << "/>"
          << "<text x=\"" << lx + 27 << "\" y=\"" << ly + 4 << "\">" << XmlEscape(name) << "</text></g>\n";
      lx += 48 + 8 * static_cast<int>(name.size());
    }
    if (!options.marker_legend.empty()) {
      svg << "<g class=\"legend-entry legend-marker\"><circle cx=\"" << lx + 6 << "\" cy=\"" << ly
          << "\" r=\"5\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\"/><text x=\"" << lx + 16
          << "\" y=\"" << ly + 4 << "\">" << XmlEscape(options.marker_legend) << "</text></g>\n";
    }
    svg << "</g>\n";
  }

  for (int i = 0; i < n; ++i) {
    const PlotPanel& panel = panels[i];
    const int ox = (i % columns) * options.panel_width;
    const int oy = top + (i / columns) * options.panel_height;
    const double left = ox + kMarginLeft, right = ox + options.panel_width - kMarginRight;
    const double ptop = oy + kMarginTop, bottom = oy + options.panel_height - kMarginBottom;
    svg << "<g class=\"panel\" data-title=\"" << XmlEscape(panel.title) << "\">\n";
    svg << "<text class=\"panel-title\" x=\"" << Num((left + right) / 2) << "\" y=\"" << oy + 18
        << "\" text-anchor=\"middle\" font-size=\"13\">" << XmlEscape(panel.title) << "</text>\n";
    svg << "<rect class=\"plot-area\" x=\"" << Num(left) << "\" y=\"" << Num(ptop) << "\" width=\""
        << Num(right - left) << "\" height=\"" << Num(bottom - ptop)
        << "\" fill=\"none\" stroke=\"#dddddd\"/>\n";
    svg << "<line class=\"axis x-axis\" x1=\"" << Num(left) << "\" y1=\"" << Num(bottom) << "\" x2=\""
        << Num(right) << "\" y2=\"" << Num(bottom) << "\" stroke=\"black\"/>\n";
    svg << "<line class=\"axis y-axis\" x1=\"" << Num(left) << "\" y1=\"" << Num(bottom) << "\" x2=\""
        << Num(left) << "\" y2=\"" << Num(ptop) << "\" stroke=\"black\"/>\n";

    // x ticks: every decade on a log axis, about five round values otherwise.
    std::vector<double> xticks;
    if (log_x) {
      for (double k = xd.lo; k <= xd.hi + 1e-9; k += 1) xticks.push_back(k);
    } else {
      xticks = NiceTicks(xd.lo, xd.hi, 5);
    }
    for (double t : xticks) {
      const double px = Map(t, xd, left, right);
      svg << "<g class=\"tick x-tick\"><line x1=\"" << Num(px) << "\" y1=\"" << Num(bottom) << "\" x2=\""
          << Num(px) << "\" y2=\"" << Num(bottom + 5) << "\" stroke=\"black\"/><text x=\"" << Num(px)
          << "\" y=\"" << Num(bottom + 18) << "\" text-anchor=\"middle\">"
          << (log_x ? ShortNumber(std::pow(10.0, t)) : TickLabel(t)) << "</text></g>\n";
    }
    for (double v : NiceTicks(yd.lo, yd.hi, kYTicks)) {
      const double py = Map(v, yd, bottom, ptop);
      svg << "<g class=\"tick y-tick\"><line x1=\"" << Num(left - 5) << "\" y1=\"" << Num(py) << "\" x2=\""
          << Num(left) << "\" y2=\"" << Num(py) << "\" stroke=\"black\"/><text x=\"" << Num(left - 8)
          << "\" y=\"" << Num(py + 4) << "\" text-anchor=\"end\">" << TickLabel(v) << "</text></g>\n";
    }
    svg << "<text class=\"axis-label x-label\" x=\"" << Num((left + right) / 2) << "\" y=\""
        << Num(bottom + 36) << "\" text-anchor=\"middle\">" << XmlEscape(options.x_label) << "</text>\n";
    const double ymid = (ptop + bottom) / 2;
    svg << "<text class=\"axis-label y-label\" x=\"" << ox + 16 << "\" y=\"" << Num(ymid)
        << "\" text-anchor=\"middle\" transform=\"rotate(-90 " << ox + 16 << ' ' << Num(ymid) << ")\">"
        << XmlEscape(options.y_label) << "</text>\n";

    for (const PlotSeries& s : panel.series) {
      const char* c = kPalette[colour[colour_key(s)] % std::size(kPalette)];
      std::string d;
      bool pen_down = false;
      for (const PlotPoint& p : s.points) {
        if (!usable(p) || !std::isfinite(p.y)) {
          pen_down = false;
          continue;
        }
        d += (d.empty() ? "" : " ") + std::string(pen_down ? "L" : "M") +
             Num(Map(x_of(p.x), xd, left, right)) + "," + Num(Map(p.y, yd, bottom, ptop));
        pen_down = true;
      }
      svg << "<path class=\"series" << (s.dashed ? " dashed" : "") << "\" data-series=\""
          << XmlEscape(s.name) << "\" d=\"" << d << "\" fill=\"none\" stroke=\"" << c
          << "\" stroke-width=\"2\"" << (s.dashed ? " stroke-dasharray=\"6 4\"" : "") << "/>\n";
      for (size_t m : s.marked) {
        if (m >= s.points.size()) continue;
        const PlotPoint& p = s.points[m];
        if (!usable(p) || !std::isfinite(p.y)) continue;
        svg << "<circle class=\"marker " << XmlEscape(options.marker_class) << "\" data-series=\""
            << XmlEscape(s.name) << "\" data-x=\"" << TickLabel(p.x) << "\" cx=\""
            << Num(Map(x_of(p.x), xd, left, right)) << "\" cy=\"" << Num(Map(p.y, yd, bottom, ptop))
            << "\" r=\"5\" fill=\"none\" stroke=\"" << c << "\" stroke-width=\"2\"/>\n";
      }
    }
    svg << "</g>\n";
  }

  int fy = top + rows * options.panel_height + 10;
  if (!options.footer.empty()) {
    svg << "<g class=\"footer\" font-size=\"10\" fill=\"#444444\">\n";
    for (const std::string& line : options.footer) {
      svg << "<text x=\"8\" y=\"" << fy << "\">" << XmlEscape(line) << "</text>\n";
      fy += kFooterLine;
    }
    svg << "</g>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}


std::string HeatmapColour(double t) {
  if (!std::isfinite(t)) t = 0;
  t = std::clamp(t, 0.0, 1.0);
  // Stops of a perceptually ordered dark-blue -> green -> yellow ramp
  // (sampled from viridis), linearly interpolated.
  static const double kStops[][3] = {{68, 1, 84},    {59, 82, 139},  {33, 145, 140},
                                     {94, 201, 98},  {253, 231, 37}};
  constexpr int kLast = 4;
  const double pos = t * kLast;
  const int i = std::min(kLast - 1, static_cast<int>(pos));
  const double f = pos - i;
  char buf[8];
  auto channel = [&](int c) {
    return static_cast<int>(std::lround(kStops[i][c] + f * (kStops[i + 1][c] - kStops[i][c])));
  };
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", channel(0), channel(1), channel(2));
  return buf;
}

std::string RenderHeatmap(const std::vector<HeatmapRow>& rows, const HeatmapOptions& options) {
  constexpr int kCellHeight = 18;
  constexpr int kGridWidth = 720;  // the widest the cells together get
  constexpr int kLegendWidth = 110;
  constexpr int kTop = 40;
  constexpr int kBottom = 52;

  std::vector<double> xs;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const HeatmapRow& row : rows) {
    for (const HeatmapCell& c : row.cells) {
      if (!std::isfinite(c.value) || !std::isfinite(c.x)) continue;
      xs.push_back(c.x);
      if (options.log_scale && c.value <= 0) continue;
      const double v = options.log_scale ? std::log10(c.value) : c.value;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());

  std::ostringstream svg;
  auto header = [&svg](int width, int height) {
    svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"heatmap\" width=\"" << width << "\" height=\""
        << height << "\" viewBox=\"0 0 " << width << ' ' << height
        << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
        << "<rect class=\"background\" x=\"0\" y=\"0\" width=\"" << width << "\" height=\"" << height
        << "\" fill=\"white\"/>\n";
  };
  if (xs.empty()) {
    header(480, 80);
    if (!options.title.empty()) {
      svg << "<text class=\"title\" x=\"240\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">"
          << XmlEscape(options.title) << "</text>\n";
    }
    svg << "<text class=\"empty\" x=\"240\" y=\"52\" text-anchor=\"middle\" fill=\"#6b7385\">"
        << XmlEscape(options.empty_text) << "</text>\n</svg>\n";
    return svg.str();
  }

  // The colour domain, in scale units (log10 of the value on a log scale).
  auto scaled = [&options](double v) { return options.log_scale ? std::log10(v) : v; };
  if (!std::isfinite(lo)) lo = hi = 0;  // every value non-positive on a log scale
  if (options.min) lo = scaled(*options.min);
  if (options.max) hi = scaled(*options.max);
  if (!(hi > lo)) {  // one value: centre it in a span of one unit (a decade on a log scale)
    lo -= 0.5;
    hi += 0.5;
  }

  size_t longest = 0;
  for (const HeatmapRow& row : rows) longest = std::max(longest, row.name.size());
  const int left = 12 + std::min(300, 7 * static_cast<int>(longest));
  const int columns = static_cast<int>(xs.size());
  const int cell_w = std::clamp(kGridWidth / columns, 3, 40);
  const int grid_w = cell_w * columns;
  const int grid_h = kCellHeight * static_cast<int>(rows.size());
  const int legend_h = std::max(100, grid_h);
  const int legend_w = std::max(kLegendWidth, 24 + 7 * static_cast<int>(options.value_label.size() + 6));
  const int width = std::max(left + grid_w + 24 + legend_w, 24 + 8 * static_cast<int>(options.title.size()));
  const int height = kTop + std::max(grid_h, legend_h) + kBottom;
  header(width, height);
  if (!options.title.empty()) {
    svg << "<text class=\"title\" x=\"12\" y=\"20\" font-size=\"14\">" << XmlEscape(options.title)
        << "</text>\n";
  }

  std::map<double, int> column_of;
  for (int i = 0; i < columns; ++i) column_of[xs[static_cast<size_t>(i)]] = i;
  svg << "<g class=\"grid\">\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    const HeatmapRow& row = rows[r];
    const int y = kTop + static_cast<int>(r) * kCellHeight;
    svg << "<text class=\"row-label\" x=\"" << left - 6 << "\" y=\"" << y + kCellHeight / 2 + 4
        << "\" text-anchor=\"end\">" << XmlEscape(row.name) << "</text>\n";
    for (const HeatmapCell& c : row.cells) {
      if (!std::isfinite(c.value) || !std::isfinite(c.x)) continue;
      const int x = left + column_of[c.x] * cell_w;
      const bool nonpositive = options.log_scale && c.value <= 0;
      const std::string fill =
          nonpositive ? "#bbbbbb" : HeatmapColour((scaled(c.value) - lo) / (hi - lo));
      char value[32];
      std::snprintf(value, sizeof value, "%.6g", c.value);
      svg << "<rect class=\"cell" << (nonpositive ? " nonpositive" : "") << "\" data-row=\""
          << XmlEscape(row.name) << "\" data-x=\"" << TickLabel(c.x) << "\" data-value=\"" << value
          << "\" x=\"" << x << "\" y=\"" << y << "\" width=\"" << cell_w << "\" height=\"" << kCellHeight
          << "\" fill=\"" << fill << "\"><title>" << XmlEscape(row.name) << " @ " << TickLabel(c.x) << ": "
          << value << "</title></rect>\n";
    }
  }
  svg << "</g>\n";

  // Column labels: as many as fit without overlapping (about 44 px apart).
  const int every = std::max(1, (44 + cell_w - 1) / cell_w);
  const int label_y = kTop + grid_h + 14;
  svg << "<g class=\"column-labels\">\n";
  for (int i = 0; i < columns; i += every) {
    svg << "<text class=\"column-label\" x=\"" << left + i * cell_w + cell_w / 2 << "\" y=\"" << label_y
        << "\" text-anchor=\"middle\">" << TickLabel(xs[static_cast<size_t>(i)]) << "</text>\n";
  }
  svg << "</g>\n";
  svg << "<text class=\"axis-label x-label\" x=\"" << left + grid_w / 2 << "\" y=\"" << label_y + 20
      << "\" text-anchor=\"middle\">" << XmlEscape(options.x_label) << "</text>\n";

  // Legend: a bar of colour steps, high at the top, ends and middle labelled.
  constexpr int kSteps = 24;
  const int lx = left + grid_w + 24;
  svg << "<g class=\"colour-legend\">\n<text class=\"legend-title\" x=\"" << lx << "\" y=\"" << kTop - 8
      << "\">" << XmlEscape(options.value_label) << (options.log_scale ? " (log)" : "") << "</text>\n";
  for (int k = 0; k < kSteps; ++k) {
    const double t = 1.0 - (k + 0.5) / kSteps;
    svg << "<rect class=\"legend-step\" x=\"" << lx << "\" y=\"" << Num(kTop + k * legend_h / double(kSteps))
        << "\" width=\"16\" height=\"" << Num(legend_h / double(kSteps) + 0.5) << "\" fill=\""
        << HeatmapColour(t) << "\"/>\n";
  }
  auto legend_text = [&](double v) {
    return options.log_scale ? ShortNumber(std::pow(10.0, v)) : TickLabel(v);
  };
  const double mid = (lo + hi) / 2;
  for (auto [v, y] : {std::pair<double, double>{hi, kTop + 8.0}, {mid, kTop + legend_h / 2.0 + 4},
                      {lo, kTop + legend_h - 0.0}}) {
    svg << "<text class=\"legend-label\" x=\"" << lx + 22 << "\" y=\"" << Num(y) << "\">" << legend_text(v)
        << "</text>\n";
  }
  if (options.log_scale) {
    svg << "<rect class=\"legend-nonpositive\" x=\"" << lx << "\" y=\"" << kTop + legend_h + 10
        << "\" width=\"16\" height=\"10\" fill=\"#bbbbbb\"/><text x=\"" << lx + 22 << "\" y=\""
        << kTop + legend_h + 19 << "\">0</text>\n";
  }
  svg << "</g>\n</svg>\n";
  return svg.str();
}

}  // namespace madam::server
