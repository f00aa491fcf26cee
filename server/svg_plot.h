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

// ---- Heatmap: a value per (row, column), e.g. per-layer telemetry ----
// Rows (top to bottom, in the given order) are named by a label at the left;
// columns are the union of the x values of every row's cells, ascending,
// labelled under the grid. Each cell with a finite value is one
//   <rect class="cell" data-row=NAME data-x=X data-value=V fill=COLOUR ...>
// (a row without a value at a column leaves that cell empty: no rect).
// Colours run from dark blue (domain low) through green to yellow (high),
// on a log10 scale when HeatmapOptions::log_scale (values <= 0 are then
// drawn grey, class "cell nonpositive", below any colour). The domain is
// [min, max] of the values unless HeatmapOptions::min/max set it. A legend bar
// (<g class="colour-legend">) with labelled ends and middle sits to the right.
// No rows (or no cells): an SVG with <text class="empty"> saying
// HeatmapOptions::empty_text, never an error.
struct HeatmapCell {
  double x = 0;      // column key (e.g. a step)
  double value = 0;  // non-finite: no cell
};

struct HeatmapRow {
  std::string name;
  std::vector<HeatmapCell> cells;
};

struct HeatmapOptions {
  std::string title;
  std::string x_label;        // under the column labels
  std::string value_label;    // the legend's title
  bool log_scale = false;
  std::optional<double> min;  // domain; nullopt: from the data
  std::optional<double> max;
  std::string empty_text = "no data";
};

std::string RenderHeatmap(const std::vector<HeatmapRow>& rows, const HeatmapOptions& options);

// The heatmap's colour for t in [0, 1] (clamped) as "#rrggbb".
std::string HeatmapColour(double t);

// Escapes & < > " ' for XML text and attribute values.
std::string XmlEscape(std::string_view text);

}  // namespace madam::server
