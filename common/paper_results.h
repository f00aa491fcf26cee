// The paper's published numbers (Bernstein et al., NeurIPS 2020), for
// reports that put them beside ours (ARCHITECTURE.md section 7, `--paper`)
// and for the claims the paper makes. Facts from PAPER_RECIPES.md: Figure 1's
// raw values (the authors' pytorch/make-plots/plot.ipynb), Table 1 and
// Table 2. Every value is in the task's own test metric: error % for the
// classifiers (Figure 1's accuracies are turned into 100 - accuracy), FID for
// the cGAN, perplexity for WikiText-2. The paper's "±" is range-based, not a
// standard deviation; it is kept as printed.
//
// Constant data; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace madam {

struct PaperCell {
  double mean = 0;
  double plus_minus = 0;  // the paper's "±"
};

// One point of the paper's Figure 1: the final test metric at one lr.
struct PaperFigure1Point {
  double lr = 0;
  double metric = 0;  // error %, FID or perplexity
};

// The paper's Figure 1 curve of `optimizer` on `task` (lr 1 .. 1e-4), empty
// when the paper has none.
std::vector<PaperFigure1Point> PaperFigure1(std::string_view task, std::string_view optimizer);

// Table 1: the tuned baseline the paper reports for `task` (its optimiser and
// lr) and its result, and Madam's at lr 0.01.
struct PaperTable1 {
  std::string baseline;  // "sgd" | "adam"
  double baseline_lr = 0;
  PaperCell baseline_cell;
  PaperCell madam;
};
std::optional<PaperTable1> FindPaperTable1(std::string_view task);

// Table 2: FP32 Madam and 12-, 10- and 8-bit Madam, by report column name
// ("fp32", "12bit", "10bit", "8bit").
std::optional<PaperCell> FindPaperTable2(std::string_view task, std::string_view column);

// The Table 2 columns the paper has, in its order.
const std::vector<std::string>& PaperTable2Columns();

}  // namespace madam
