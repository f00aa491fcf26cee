// libFuzzer target: sweep-file parse and validate (common/sweep_spec.h).
//
// Beyond "no crash, no sanitizer report", it checks the parser's promises on
// every input: an error is "FILE:LINE:COL: message"; an accepted sweep
// stays under the run cap, and (when small enough to expand here) yields
// exactly CountRuns runs, each of which RunConfigFromParams accepts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/run_config.h"
#include "common/sweep_spec.h"

namespace {

[[noreturn]] void Broken(const char* what, const std::string& detail) {
  std::fprintf(stderr, "sweep_spec_fuzz: %s: %s\n", what, detail.c_str());
  std::abort();
}

bool HasPosition(const std::string& message) {
  // "fuzz.yaml:LINE:COL: "
  std::string_view rest(message);
  constexpr std::string_view kPrefix = "fuzz.yaml:";
  if (rest.substr(0, kPrefix.size()) != kPrefix) return false;
  rest.remove_prefix(kPrefix.size());
  for (int field = 0; field < 2; ++field) {
    size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
    if (digits == 0 || digits >= rest.size() || rest[digits] != ':') return false;
    rest.remove_prefix(digits + 1);
  }
  return rest.substr(0, 1) == " ";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  madam::SweepLimits limits;
  limits.max_runs = 5000;  // keeps each input fast; the cap logic is the same
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = madam::ParseSweepSpec(text, "fuzz.yaml", limits);
  if (!spec.ok()) {
    if (!HasPosition(spec.status().message())) Broken("error without position", spec.status().message());
    return 0;
  }
  size_t count = madam::CountRuns(*spec);
  if (count == 0 || count > limits.max_runs) Broken("run count out of range", std::to_string(count));
  if (count > 1000) return 0;
  auto runs = madam::ExpandSweep(*spec);
  if (runs.size() != count) Broken("expansion size", std::to_string(runs.size()));
  for (const auto& run : runs) {
    auto config = madam::RunConfigFromParams(run.params);
    if (!config.ok()) Broken("accepted sweep has an invalid run", config.status().message());
    if (run.labels.size() != spec->axes.size()) Broken("labels", std::to_string(run.index));
  }
  return 0;
}
