// The paper's Theorem 1 (Bernstein et al., NeurIPS 2020, section 3): under
// deep relative trust, the multiplicative update of a depth-L network
// decreases the loss when
//     eta < (1 + cos gamma)^(1/L) - 1
// for every layer's angle gamma between |gradient| and |weights|. The paper
// substitutes gamma ~ pi/4 and reads off eta = 0.01, 0.001, 0.0001 for 50,
// 500 and 5000 layers. Pure functions; thread-safe.
#pragma once

#include <vector>

namespace madam {

// cos(pi/4): the angle the paper substitutes.
inline constexpr double kPaperCosGamma = 0.70710678118654752440;

// The largest eta Theorem 1 guarantees descent below, for `depth` >= 1
// layers and cos_gamma in (0, 1].
double Theorem1MaxLr(int depth, double cos_gamma);

struct Theorem1Example {
  int depth;
  double paper_lr;  // the eta the paper quotes for this depth
};
// The paper's three examples (50, 500, 5000 layers).
const std::vector<Theorem1Example>& Theorem1PaperExamples();

}  // namespace madam
