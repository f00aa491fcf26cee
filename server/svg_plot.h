// SVG line plots: the one plotting module shared by `madamctl report ...
// --format svg` (Figure 1, via server/report.h) and the HTTP dashboard
// (ARCHITECTURE.md section 8). Pure functions: data in, SVG text out; no I/O,
// no gRPC, no Store.
//
// Layout. Panels sit in a grid (LinePlotOptions::columns per row), each with
// its own axes, ticks and title; one legend for all panels sits above them,
// and footer lines (e.g. a report's provenance) below. Coordinates are
// absolute (no transforms), so a reader — or a test — can map a data point to
// its pixel position from the axis lines alone:
//   <line class="axis x-axis" x1=left x2=right ...>   spans the x domain
//   <line class="axis y-axis" y1=bottom y2=top ...>   spans the y domain
// With log_x the x domain is [10^floor(log10 min x), 10^ceil(log10 max x)];
// otherwise [min x, max x]. Each series is one
//   <path class="series" data-series=NAME d="M x,y L x,y ...">
// per panel (a non-finite y breaks the line with a new M), and each marked
// point is a <circle class="marker" data-series=NAME data-x=X ...>.
//
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace madam::server {

struct PlotPoint {
  double x = 0;  // must be > 0 on a log_x plot (others are skipped)
  double y = 0;  // non-finite: a gap; the line breaks there
};

struct PlotSeries {
  std::string name;                 // legend text and data-series attribute
  std::vector<PlotPoint> points;    // drawn in the given order
  std::vector<size_t> marked;       // indexes into points drawn with a marker
  bool dashed = false;              // a dashed line (class "series dashed"), e.g. a reference curve
  std::string colour_of;            // draw in this series' colour; empty: its own
};

struct PlotPanel {
  std::string title;
  std::vector<PlotSeries> series;
};

struct LinePlotOptions {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_x = false;
  std::optional<double> y_min;  // nullopt: from the data
  std::optional<double> y_max;  // nullopt: from the data
  int panel_width = 420;        // pixels, axes and labels included
  int panel_height = 300;
  int columns = 3;              // panels per row
  std::string marker_class = "best";    // extra class on every marker circle
  std::string marker_legend = "best";   // legend text for the marker; empty: none
  std::vector<std::string> footer;      // text lines under the panels
};

// Renders the panels as one standalone SVG document (with XML declaration).
// Series keep the same colour in every panel (by name, in order of first
// appearance). Text is XML-escaped.
std::string RenderLinePlot(const std::vector<PlotPanel>& panels, const LinePlotOptions& options);

// Escapes & < > " ' for XML text and attribute values.
std::string XmlEscape(std::string_view text);

}  // namespace madam::server
