// madamctl's output formats: aligned tables for people, JSON objects with
// the shapes of ARCHITECTURE.md section 3 for scripts, CSV, and the live
// progress display of `sweep watch`.
//
// JSON uses nlohmann::ordered_json so that keys come out in the documented
// order ("id", "name", "state", "counts", then extras). Numbers print in their
// shortest round-tripping decimal form, in CSV and tables as in JSON;
// non-finite values are JSON null and "nan"/"inf"/"-inf" in text.
//
// Thread-compatible: no shared state.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "madam/v1/coordinator.pb.h"

namespace madam::cli {

using Json = nlohmann::ordered_json;

// ---- values ----

// Shortest decimal that reads back as the same double ("0.001", "3",
// "1e-07"); "nan", "inf", "-inf" for non-finite values.
std::string FormatNumber(double value);
// Four significant digits ("0.2043", "1.2e+04"), for live displays where
// width matters more than round-tripping.
std::string FormatCompact(double value);
// A JSON number: an integer when the value is integral (so `epochs` is 3,
// not 3.0), null when it is not finite.
Json JsonNumber(double value);

std::string ParamToString(const madam::v1::ParamValue& value);
Json ParamToJson(const madam::v1::ParamValue& value);

// "pending", "running", ... ("unspecified" for 0).
std::string RunStateName(madam::v1::RunState state);
// The inverse, case-insensitive, also accepting the enum's own names
// ("RUN_STATE_FAILED"); nullopt for anything else.
std::optional<madam::v1::RunState> ParseRunState(std::string_view name);

// Unix milliseconds as "2026-11-28 13:31:57Z" (UTC); "-" for 0.
std::string FormatTimeMs(int64_t unix_ms);
// How long ago `then_ms` was: "4s ago", "3m ago", "2h ago", "5d ago"; "never"
// for 0.
std::string FormatAge(int64_t now_ms, int64_t then_ms);

// "lr=0.01 optimizer=adam": a label map sorted by axis name.
std::string JoinLabels(const google::protobuf::Map<std::string, std::string>& labels);

// A proto map's keys, sorted (proto map iteration order is unspecified).
template <typename V>
std::vector<std::string> SortedKeys(const google::protobuf::Map<std::string, V>& map) {
  std::vector<std::string> keys;
  keys.reserve(map.size());
  for (const auto& [key, value] : map) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  return keys;
}

// ---- domain objects as JSON ----

// Runs that have ended: succeeded + diverged + failed + cancelled.
int64_t DoneRuns(const madam::v1::RunCounts& counts);
int64_t TotalRuns(const madam::v1::RunCounts& counts);

// {"id","name","state","counts":{pending,running,succeeded,diverged,failed,
// cancelled}, then "metric", "max_concurrent", "max_attempts", "device",
// "created_at_ms"}.
Json SweepToJson(const madam::v1::Sweep& sweep);
// Every field of a run: {"id","sweep","index","state","attempts",
// "max_attempts","params","labels","final","last_error","worker",
// "lease_epoch","started_at_ms","ended_at_ms","cancel_requested"}.
Json RunToJson(const madam::v1::Run& run);
// {"name","step","value","time"}.
Json MetricPointToJson(const madam::v1::MetricPoint& point);

// ---- tables ----

// `text` with every control byte (below 0x20, and 0x7f) written as \xNN, so
// a name or error text a worker sent cannot move the cursor, recolour or
// clear the terminal (ARCHITECTURE.md section 9).
std::string EscapeControl(std::string_view text, bool keep_newlines = false);

// Columns left-aligned, padded to their widest cell, two spaces apart.
// Cells (and key-value values) are printed through EscapeControl.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  // REQUIRES: cells.size() == number of headers.
  void AddRow(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// Prints "key: value" lines with the values aligned.
void PrintKeyValues(std::ostream& out,
                    const std::vector<std::pair<std::string, std::string>>& rows);

// Cuts `text` to one line of at most `width` characters, ending in "..."
// when it was longer.
std::string Abbreviate(std::string_view text, size_t width);

// ---- CSV (RFC 4180) ----

// The field quoted when it holds a comma, quote, CR or LF.
std::string CsvField(std::string_view field);
void WriteCsvRow(std::ostream& out, const std::vector<std::string>& fields);

// ---- progress ----

// "[#########-----------]" for fraction 0.45 and width 20 (the inner width);
// fraction is clamped to 0..1.
std::string ProgressBar(double fraction, int width);

// The text of one `sweep watch` update. Lines do not end in '\n'.
struct ProgressFrame {
  std::string summary;             // overall bar, done/total, counts by state
  std::vector<std::string> runs;   // one per running run
};
ProgressFrame RenderProgress(const madam::v1::SweepProgress& progress);
// One JSON Lines object: {"sweep": SweepToJson, "running": [{"run","labels",
// "worker","step","fraction","latest"}]}.
Json ProgressToJson(const madam::v1::SweepProgress& progress);

// Draws successive frames. On a terminal each frame replaces the previous
// one in place (cursor up, clear line); elsewhere each frame is one plain
// summary line, so logs stay readable.
class ProgressPrinter {
 public:
  // `columns`: the terminal's width, 0 if unknown; on a terminal, longer
  // lines are cut so that none wraps.
  ProgressPrinter(std::ostream& out, bool tty, int columns = 0)
      : out_(out), tty_(tty), columns_(columns) {}
  void Draw(const ProgressFrame& frame);
  // Something else was printed below the frame (an error, say): the next
  // frame starts afresh instead of overwriting it.
  void Detach() { lines_drawn_ = 0; }

 private:
  std::ostream& out_;
  bool tty_;
  int columns_;
  int lines_drawn_ = 0;  // lines of the last frame, to move back over
};

}  // namespace madam::cli
