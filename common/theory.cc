#include "common/theory.h"

#include <cmath>

namespace madam {

double Theorem1MaxLr(int depth, double cos_gamma) {
  // expm1/log1p keep the digits for deep networks, where the bound is tiny.
  return std::expm1(std::log1p(cos_gamma) / static_cast<double>(depth));
}

const std::vector<Theorem1Example>& Theorem1PaperExamples() {
  static const std::vector<Theorem1Example> examples = {{50, 0.01}, {500, 0.001}, {5000, 0.0001}};
  return examples;
}

}  // namespace madam
