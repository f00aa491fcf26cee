// A MetricSink that keeps every point a run reports, for tests of the
// training loop through the torch-free Trainer API.
#pragma once

#include <string>
#include <vector>

#include "worker/trainer.h"

namespace madam::worker::testing {

class CollectingSink : public MetricSink {
 public:
  void Write(const MetricPoint& p) override { points.push_back(p); }
  // The points of one metric, in the order they came.
  std::vector<MetricPoint> Named(const std::string& name) const {
    std::vector<MetricPoint> out;
    for (const auto& p : points) {
      if (p.name == name) out.push_back(p);
    }
    return out;
  }
  std::vector<MetricPoint> points;
};

}  // namespace madam::worker::testing
