#include "cli/output.h"

#include <cctype>
#include <cstdio>
#include <cmath>
#include <ctime>

#include "common/param_json.h"
#include "common/run_config.h"
#include "proto/param_convert.h"

namespace madam::cli {

namespace v1 = madam::v1;

// ---- values ----

std::string FormatNumber(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // One shortest-round-trip printer for the project: the one run parameters
  // already use.
  return madam::ParamValue::Number(value).ToString();
}

std::string FormatCompact(double value) {
  if (!std::isfinite(value)) return FormatNumber(value);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", value);
  return buf;
}

Json JsonNumber(double value) {
  if (!std::isfinite(value)) return nullptr;
  constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
  if (value == std::floor(value) && std::fabs(value) < kExactIntegers) {
    return static_cast<int64_t>(value);
  }
  return value;
}

std::string ParamToString(const v1::ParamValue& value) {
  switch (value.kind_case()) {
    case v1::ParamValue::kNumber: return FormatNumber(value.number());
    case v1::ParamValue::kText: return value.text();
    case v1::ParamValue::kNumbers: return madam::ParamFromProto(value).ToString();
    default: return "";
  }
}

Json ParamToJson(const v1::ParamValue& value) {
  switch (value.kind_case()) {
    case v1::ParamValue::kNumber: return JsonNumber(value.number());
    case v1::ParamValue::kText: return value.text();
    case v1::ParamValue::kNumbers: return madam::ParamToJson(madam::ParamFromProto(value));
    default: return nullptr;
  }
}

std::string RunStateName(v1::RunState state) {
  switch (state) {
    case v1::RUN_STATE_PENDING: return "pending";
    case v1::RUN_STATE_RUNNING: return "running";
    case v1::RUN_STATE_SUCCEEDED: return "succeeded";
    case v1::RUN_STATE_DIVERGED: return "diverged";
    case v1::RUN_STATE_FAILED: return "failed";
    case v1::RUN_STATE_CANCELLED: return "cancelled";
    default: return "unspecified";
  }
}

std::optional<v1::RunState> ParseRunState(std::string_view name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  constexpr std::string_view kPrefix = "run_state_";
  if (lower.compare(0, kPrefix.size(), kPrefix) == 0) lower.erase(0, kPrefix.size());
  for (v1::RunState s : {v1::RUN_STATE_PENDING, v1::RUN_STATE_RUNNING, v1::RUN_STATE_SUCCEEDED,
                         v1::RUN_STATE_DIVERGED, v1::RUN_STATE_FAILED, v1::RUN_STATE_CANCELLED}) {
    if (lower == RunStateName(s)) return s;
  }
  return std::nullopt;
}

std::string FormatTimeMs(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

std::string FormatAge(int64_t now_ms, int64_t then_ms) {
  if (then_ms == 0) return "never";
  int64_t s = std::max<int64_t>(0, (now_ms - then_ms) / 1000);
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 120 * 60) return std::to_string(s / 60) + "m ago";
  if (s < 48 * 3600) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

std::string JoinLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  std::string joined;
  for (const std::string& key : SortedKeys(labels)) {
    if (!joined.empty()) joined += ' ';
    joined += key + "=" + labels.at(key);
  }
  return joined;
}

// ---- domain objects as JSON ----

int64_t DoneRuns(const v1::RunCounts& c) {
  return c.succeeded() + c.diverged() + c.failed() + c.cancelled();
}

int64_t TotalRuns(const v1::RunCounts& c) { return c.pending() + c.running() + DoneRuns(c); }

Json SweepToJson(const v1::Sweep& sweep) {
  const v1::RunCounts& c = sweep.counts();
  Json counts = Json::object();
  counts["pending"] = c.pending();
  counts["running"] = c.running();
  counts["succeeded"] = c.succeeded();
  counts["diverged"] = c.diverged();
  counts["failed"] = c.failed();
  counts["cancelled"] = c.cancelled();
  Json j = Json::object();
  j["id"] = sweep.id();
  j["name"] = sweep.name();
  j["state"] = sweep.state();
  j["counts"] = std::move(counts);
  // Extras, after the contract's keys.
  j["metric"] = {{"name", sweep.metric_name()}, {"goal", sweep.metric_goal()}};
  j["runs"] = TotalRuns(c);
  j["done"] = DoneRuns(c);
  j["max_concurrent"] = sweep.max_concurrent();
  j["max_attempts"] = sweep.max_attempts();
  j["device"] = sweep.device();
  j["created_at_ms"] = sweep.created_at_ms();
  if (!sweep.parent_sweep_id().empty()) {
    j["parent"] = sweep.parent_sweep_id();
    j["promotion_reasons"] = Json::array();
    for (const std::string& r : sweep.promotion_reasons()) j["promotion_reasons"].push_back(r);
  }
  return j;
}

Json RunToJson(const v1::Run& run) {
  Json params = Json::object();
  for (const std::string& key : SortedKeys(run.params())) params[key] = ParamToJson(run.params().at(key));
  Json labels = Json::object();
  for (const std::string& key : SortedKeys(run.labels())) labels[key] = run.labels().at(key);
  Json final_values = Json::object();
  for (const std::string& key : SortedKeys(run.final())) final_values[key] = JsonNumber(run.final().at(key));
  Json j = Json::object();
  j["id"] = run.id();
  j["sweep"] = run.sweep_id();
  j["index"] = run.index();
  j["state"] = RunStateName(run.state());
  j["attempts"] = run.attempts();
  j["max_attempts"] = run.max_attempts();
  j["params"] = std::move(params);
  j["labels"] = std::move(labels);
  j["final"] = std::move(final_values);
  j["last_error"] = run.last_error();
  j["worker"] = run.worker();
  j["lease_epoch"] = run.lease_epoch();
  j["started_at_ms"] = run.started_at_ms();
  j["ended_at_ms"] = run.ended_at_ms();
  j["cancel_requested"] = run.cancel_requested();
  return j;
}

Json MetricPointToJson(const v1::MetricPoint& point) {
  Json j = Json::object();
  j["name"] = point.name();
  j["step"] = point.step();
  j["value"] = JsonNumber(point.value());
  // Time is seconds with a fraction; keep it a plain double even when whole.
  j["time"] = std::isfinite(point.time()) ? Json(point.time()) : Json(nullptr);
  return j;
}

// ---- tables ----

std::string EscapeControl(std::string_view text, bool keep_newlines) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if ((c < 0x20 || c == 0x7f) && !(keep_newlines && c == '\n')) {
      static const char* kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (std::string& cell : cells) cell = EscapeControl(cell);
  rows_.push_back(std::move(cells));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(headers_.size());
  for (size_t i = 0; i < headers_.size(); ++i) widths[i] = headers_[i].size();
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      line += cells[i];
      if (i + 1 < cells.size()) line.append(widths[i] - cells[i].size() + 2, ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);  // an empty last column leaves no trailing blanks
    out << line << '\n';
  };
  print_row(headers_);
  for (const auto& row : rows_) print_row(row);
}

void PrintKeyValues(std::ostream& out,
                    const std::vector<std::pair<std::string, std::string>>& rows) {
  size_t width = 0;
  for (const auto& [key, value] : rows) width = std::max(width, key.size() + 1);
  for (const auto& [key, value] : rows) {
    std::string label = key + ":";
    label.append(width - label.size() + 1, ' ');
    out << label << EscapeControl(value, /*keep_newlines=*/true) << '\n';
  }
}

std::string Abbreviate(std::string_view text, size_t width) {
  std::string line(text.substr(0, text.find_first_of("\r\n")));
  bool cut = line.size() < text.size();
  if (line.size() > width) {
    line.resize(width >= 3 ? width - 3 : 0);
    cut = true;
  }
  if (cut) line += "...";
  return line;
}

// ---- CSV ----

std::string CsvField(std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(field);
  std::string quoted = "\"";
  for (char c : field) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

void WriteCsvRow(std::ostream& out, const std::vector<std::string>& fields) {
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) out << ',';
    out << CsvField(fields[i]);
  }
  out << '\n';
}

// ---- progress ----

std::string ProgressBar(double fraction, int width) {
  if (!(fraction >= 0)) fraction = 0;  // NaN too
  fraction = std::min(fraction, 1.0);
  int filled = static_cast<int>(std::floor(fraction * width + 1e-9));
  return "[" + std::string(filled, '#') + std::string(width - filled, '-') + "]";
}

namespace {

constexpr int kSummaryBarWidth = 30;
constexpr int kRunBarWidth = 20;

std::string Percent(double fraction) {
  if (!(fraction >= 0)) fraction = 0;
  return std::to_string(static_cast<int>(std::floor(std::min(fraction, 1.0) * 100))) + "%";
}

}  // namespace

ProgressFrame RenderProgress(const v1::SweepProgress& progress) {
  const v1::Sweep& sweep = progress.sweep();
  const v1::RunCounts& c = sweep.counts();
  int64_t done = DoneRuns(c), total = TotalRuns(c);
  double fraction = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0;
  ProgressFrame frame;
  frame.summary = "sweep " + sweep.id() + (sweep.name().empty() ? "" : " (" + sweep.name() + ")") +
                  " " + sweep.state() + " " + ProgressBar(fraction, kSummaryBarWidth) + " " +
                  std::to_string(done) + "/" + std::to_string(total) +
                  "  pending " + std::to_string(c.pending()) +
                  "  running " + std::to_string(c.running()) +
                  "  succeeded " + std::to_string(c.succeeded()) +
                  "  diverged " + std::to_string(c.diverged()) +
                  "  failed " + std::to_string(c.failed()) +
                  "  cancelled " + std::to_string(c.cancelled());
  for (const v1::RunProgress& run : progress.running()) {
    std::string line = "  " + run.run_id();
    std::string labels = JoinLabels(run.labels());
    if (!labels.empty()) line += "  " + labels;
    if (!run.worker().empty()) line += "  on " + run.worker();
    line += "  " + ProgressBar(run.fraction(), kRunBarWidth) + " " + Percent(run.fraction());
    line += "  step " + std::to_string(run.step());
    for (const std::string& name : SortedKeys(run.latest())) {
      line += "  " + name + " " + FormatCompact(run.latest().at(name));
    }
    frame.runs.push_back(std::move(line));
  }
  return frame;
}

Json ProgressToJson(const v1::SweepProgress& progress) {
  Json running = Json::array();
  for (const v1::RunProgress& run : progress.running()) {
    Json labels = Json::object();
    for (const std::string& key : SortedKeys(run.labels())) labels[key] = run.labels().at(key);
    Json latest = Json::object();
    for (const std::string& key : SortedKeys(run.latest())) latest[key] = JsonNumber(run.latest().at(key));
    Json r = Json::object();
    r["run"] = run.run_id();
    r["labels"] = std::move(labels);
    r["worker"] = run.worker();
    r["step"] = run.step();
    r["fraction"] = run.fraction();
    r["latest"] = std::move(latest);
    running.push_back(std::move(r));
  }
  Json j = Json::object();
  j["sweep"] = SweepToJson(progress.sweep());
  j["running"] = std::move(running);
  return j;
}

void ProgressPrinter::Draw(const ProgressFrame& frame) {
  if (!tty_) {
    out_ << frame.summary << '\n' << std::flush;
    return;
  }
  std::string text;
  // Back to the first line of the previous frame, then overwrite line by
  // line; "\x1b[J" clears what is left when this frame is shorter.
  if (lines_drawn_ > 0) text += "\x1b[" + std::to_string(lines_drawn_) + "A";
  // A line wider than the terminal would wrap, and moving up by the count of
  // lines drawn would then land in the wrong place: cut it instead.
  auto add_line = [&](const std::string& line) {
    text += "\r\x1b[2K";
    text += columns_ > 1 && line.size() >= static_cast<size_t>(columns_)
                ? line.substr(0, static_cast<size_t>(columns_ - 1))
                : line;
    text += "\n";
  };
  add_line(frame.summary);
  for (const std::string& line : frame.runs) add_line(line);
  text += "\x1b[J";
  out_ << text << std::flush;
  lines_drawn_ = 1 + static_cast<int>(frame.runs.size());
}

}  // namespace madam::cli
