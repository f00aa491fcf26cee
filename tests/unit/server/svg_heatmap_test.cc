// RenderHeatmap (server/svg_plot.h) on hand-made points: cells per (row,
// column), colours by value on a linear and a log scale, the legend, and the
// empty state.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "server/svg_plot.h"

namespace madam::server {
namespace {

struct Cell {
  std::string row, x, value, fill;
  int px = 0, py = 0;
};

std::vector<Cell> Cells(const std::string& svg) {
  std::vector<Cell> out;
  const std::regex re(
      "<rect class=\"cell[^\"]*\" data-row=\"([^\"]*)\" data-x=\"([^\"]*)\" data-value=\"([^\"]*)\" "
      "x=\"(\\d+)\" y=\"(\\d+)\"[^>]*fill=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it) {
    out.push_back({(*it)[1], (*it)[2], (*it)[3], (*it)[6], std::stoi((*it)[4]), std::stoi((*it)[5])});
  }
  return out;
}

TEST(HeatmapTest, OneCellPerValueInRowsAndColumnsByStep) {
  // Two tensors; fc2 misses step 20 and has a NaN at step 30 (no cell).
  std::vector<HeatmapRow> rows = {
      {"fc1.weight", {{10, 0.0}, {20, 0.5}, {30, 1.0}}},
      {"fc2.weight", {{30, NAN}, {10, 0.25}}},
  };
  HeatmapOptions o;
  o.min = 0;
  o.max = 1;
  o.value_label = "at_bound_fraction";
  const std::string svg = RenderHeatmap(rows, o);
  const std::vector<Cell> cells = Cells(svg);
  ASSERT_EQ(cells.size(), 4u) << svg;
  std::map<std::string, Cell> by;  // "row@x"
  for (const Cell& c : cells) by[c.row + "@" + c.x] = c;
  ASSERT_TRUE(by.count("fc1.weight@10") && by.count("fc1.weight@20") && by.count("fc1.weight@30"));
  ASSERT_TRUE(by.count("fc2.weight@10"));
  // Columns ascend by step; rows keep their order; one column per distinct step.
  EXPECT_LT(by["fc1.weight@10"].px, by["fc1.weight@20"].px);
  EXPECT_LT(by["fc1.weight@20"].px, by["fc1.weight@30"].px);
  EXPECT_EQ(by["fc1.weight@10"].px, by["fc2.weight@10"].px);
  EXPECT_LT(by["fc1.weight@10"].py, by["fc2.weight@10"].py);
  // Linear 0..1: the ends of the ramp and the middle.
  EXPECT_EQ(by["fc1.weight@10"].fill, HeatmapColour(0));
  EXPECT_EQ(by["fc1.weight@20"].fill, HeatmapColour(0.5));
  EXPECT_EQ(by["fc1.weight@30"].fill, HeatmapColour(1));
  EXPECT_EQ(by["fc2.weight@10"].fill, HeatmapColour(0.25));
  EXPECT_NE(HeatmapColour(0), HeatmapColour(1));
  EXPECT_EQ(by["fc2.weight@10"].value, "0.25");
  // Tensor names label the rows; the legend names the metric with 0 and 1.
  EXPECT_NE(svg.find("<text class=\"row-label\""), std::string::npos);
  EXPECT_NE(svg.find(">fc2.weight</text>"), std::string::npos);
  EXPECT_NE(svg.find("<g class=\"colour-legend\">"), std::string::npos);
  EXPECT_NE(svg.find(">at_bound_fraction</text>"), std::string::npos);
  EXPECT_NE(svg.find("class=\"legend-label\" x=\"" ), std::string::npos);
  EXPECT_EQ(svg.find("class=\"empty\""), std::string::npos);
}

TEST(HeatmapTest, LogScaleSpansWholeDecadesAndGreysNonPositiveValues) {
  std::vector<HeatmapRow> rows = {{"w", {{1, 1e-4}, {2, 1e-3}, {3, 1e-2}, {4, 0.0}}}};
  HeatmapOptions o;
  o.log_scale = true;
  o.value_label = "relative_update";
  const std::string svg = RenderHeatmap(rows, o);
  const std::vector<Cell> cells = Cells(svg);
  ASSERT_EQ(cells.size(), 4u) << svg;
  // Domain [1e-4, 1e-2] in log10: the middle value sits at the ramp's middle.
  EXPECT_EQ(cells[0].fill, HeatmapColour(0));
  EXPECT_EQ(cells[1].fill, HeatmapColour(0.5));
  EXPECT_EQ(cells[2].fill, HeatmapColour(1));
  EXPECT_EQ(cells[3].fill, "#bbbbbb");
  EXPECT_NE(svg.find("class=\"cell nonpositive\""), std::string::npos);
  EXPECT_NE(svg.find("relative_update (log)"), std::string::npos);
  EXPECT_NE(svg.find(">1e-4</text>"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">1e-2</text>"), std::string::npos) << svg;
}

TEST(HeatmapTest, EscapesNamesAndShowsAnEmptyStateWithoutCells) {
  const std::string named = RenderHeatmap({{"a<b>&\"c\"", {{5, 0.5}}}}, HeatmapOptions{});
  EXPECT_NE(named.find("data-row=\"a&lt;b&gt;&amp;&quot;c&quot;\""), std::string::npos) << named;
  EXPECT_EQ(named.find("a<b>"), std::string::npos);

  HeatmapOptions o;
  o.empty_text = "this run logged no layer metrics";
  for (const auto& rows : {std::vector<HeatmapRow>{}, std::vector<HeatmapRow>{{"w", {{1, NAN}}}}}) {
    const std::string svg = RenderHeatmap(rows, o);
    EXPECT_NE(svg.find("<svg"), std::string::npos);
    EXPECT_NE(svg.find("<text class=\"empty\""), std::string::npos) << svg;
    EXPECT_NE(svg.find("this run logged no layer metrics"), std::string::npos);
    EXPECT_TRUE(Cells(svg).empty());
  }
}

}  // namespace
}  // namespace madam::server
