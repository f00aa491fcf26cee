#include "server/dashboard_routes.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "common/number_text.h"
#include "common/param_json.h"
#include "common/recipe.h"
#include "server/claims.h"
#include "server/cost.h"
#include "server/report.h"
#include "server/svg_plot.h"

namespace madam::server {
namespace {

using Json = nlohmann::ordered_json;

// Series drawn by curves.svg, and points per series (evenly thinned beyond).
constexpr size_t kMaxCurveRuns = 64;
constexpr size_t kMaxCurvePoints = 600;
// Bounds of a layers.svg heatmap (ARCHITECTURE.md section 9: every answer is
// bounded): tensors drawn, and logged steps per tensor.
constexpr size_t kMaxHeatmapRows = 256;
constexpr size_t kMaxHeatmapColumns = 2000;

HttpResponse JsonResponse(const Json& body, int status = 200) {
  // Non-finite numbers (a diverged loss) become null rather than invalid JSON.
  return HttpResponse::Json(status, body.dump(-1, ' ', false, Json::error_handler_t::replace));
}

HttpResponse Error(int status, const std::string& message) {
  return JsonResponse(Json{{"error", message}}, status);
}

HttpResponse FromStatus(const Status& s) {
  switch (s.code()) {
    case StatusCode::kNotFound: return Error(404, s.message());
    case StatusCode::kInvalidArgument: return Error(400, s.message());
    case StatusCode::kFailedPrecondition: return Error(409, s.message());
    case StatusCode::kUnavailable: return Error(503, s.message());
    default: return Error(500, s.message());
  }
}

Json Number(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }

Json CountsJson(const RunCounts& c) {
  return Json{{"pending", c.pending},     {"running", c.running}, {"succeeded", c.succeeded},
              {"diverged", c.diverged},   {"failed", c.failed},   {"cancelled", c.cancelled},
              {"total", c.total()}};
}

Json SweepJson(const SweepRow& s, bool with_spec) {
  Json j{{"id", s.id},
         {"name", s.name},
         {"state", s.state},
         {"metric", {{"name", s.metric_name}, {"goal", s.metric_goal}}},
         {"device", s.device},
         {"max_concurrent", s.max_concurrent},
         {"max_attempts", s.max_attempts},
         {"created_at_ms", s.created_at_ms},
         {"counts", CountsJson(s.counts)}};
  if (with_spec) j["spec_text"] = s.spec_text;
  // A promoted (stage-2) sweep names its Figure 1 parent and why each cell
  // is what it is (ARCHITECTURE.md section 4, "Two stages").
  j["parent"] = s.parent_sweep_id.empty() ? Json(nullptr) : Json(s.parent_sweep_id);
  j["promotion_reasons"] = s.promotion_reasons;
  return j;
}

// A parameter as a person reads it: numbers short (common/number_text.h),
// so an lr of 10^-2.5 never shows as 0.0031622776601683794.
std::string ParamDisplay(const ParamValue& v) {
  if (v.is_number()) return ShortNumber(v.number);
  if (v.is_string()) return v.text;
  std::string out = "[";
  for (size_t i = 0; i < v.list.size(); ++i) out += (i ? ", " : "") + ShortNumber(v.list[i]);
  return out + "]";
}

// An axis label with each numeric part ("0.0031622776601683794",
// "int_madam/12/0.001") in the short form.
std::string LabelDisplay(const std::string& label) {
  std::string out;
  size_t start = 0;
  while (start <= label.size()) {
    size_t end = label.find('/', start);
    if (end == std::string::npos) end = label.size();
    const std::string part = label.substr(start, end - start);
    char* stop = nullptr;
    const double v = part.empty() ? 0 : std::strtod(part.c_str(), &stop);
    out += (start ? "/" : "") + (!part.empty() && stop && *stop == '\0' ? ShortNumber(v) : part);
    start = end + 1;
  }
  return out;
}

Json ParamsJson(const RunParams& params) { return ParamsToJsonObject(params); }

std::string ParamDisplay(const ParamValue& v);

Json ParamsText(const RunParams& params) {
  Json j = Json::object();
  for (const auto& [name, value] : params) j[name] = ParamDisplay(value);
  return j;
}

Json RunJson(const RunRow& r, const std::optional<LiveRun>& live) {
  Json final_values = Json::object();
  for (const auto& [name, value] : r.final) final_values[name] = Number(value);
  Json j{{"id", r.id},
         {"sweep", r.sweep_id},
         {"index", r.index},
         {"state", RunStateName(r.state)},
         {"attempts", r.attempts},
         {"max_attempts", r.max_attempts},
         {"params", ParamsJson(ResolvedRunParams(r.params))},
         {"params_text", ParamsText(ResolvedRunParams(r.params))},
         {"labels", r.labels},
         {"final", final_values},
         {"last_error", r.last_error},
         {"worker", r.lease_worker},
         {"started_at_ms", r.started_at_ms},
         {"ended_at_ms", r.ended_at_ms}};
  if (live && r.state == RunState::kRunning) {
    Json latest = Json::object();
    for (const auto& [name, value] : live->latest) latest[name] = Number(value);
    j["live"] = Json{{"step", live->step}, {"progress", live->progress}, {"latest", latest}};
  } else {
    j["live"] = nullptr;
  }
  return j;
}

// "#3 optimizer=adam lr=1e-2": short enough for a legend, unique in a
// sweep. A sweep whose axes do not name lr (a promoted sweep's cells) still
// shows it.
std::string RunLabel(const RunRow& r) {
  std::string label = "#" + std::to_string(r.index);
  for (const auto& [name, value] : r.labels) label += " " + name + "=" + LabelDisplay(value);
  if (!r.labels.count("lr")) {
    auto lr = r.params.find("lr");
    if (lr != r.params.end()) label += " lr=" + ParamDisplay(lr->second);
  }
  auto seed = r.params.find("seed");
  if (seed != r.params.end() && seed->second.is_number() && seed->second.number != 0) {
    label += " seed=" + ParamDisplay(seed->second);
  }
  return label;
}

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

// A non-negative integer query parameter no larger than `cap`; `fallback`
// when absent. An error response (400 naming the parameter and cap) otherwise.
std::optional<HttpResponse> ParseBounded(const HttpRequest& request, const char* key, int64_t cap,
                                         int64_t fallback, int64_t* out) {
  *out = fallback;
  auto it = request.query.find(key);
  if (it == request.query.end()) return std::nullopt;
  int64_t v = 0;
  try {
    size_t used = 0;
    v = std::stoll(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    return Error(400, std::string(key) + " must be an integer, not '" + it->second.substr(0, 40) + "'");
  }
  if (v < 0) return Error(400, std::string(key) + " must not be negative, got " + std::to_string(v));
  if (v > cap) {
    return Error(400, std::string(key) + " " + std::to_string(v) + " is over the cap of " +
                          std::to_string(cap));
  }
  *out = v;
  return std::nullopt;
}

// Pages a list in place: `offset`, then at most `limit`; true when cut.
template <typename T>
bool Page(std::vector<T>* rows, int64_t offset, int64_t limit) {
  const size_t from = std::min(rows->size(), static_cast<size_t>(offset));
  rows->erase(rows->begin(), rows->begin() + static_cast<std::ptrdiff_t>(from));
  if (rows->size() <= static_cast<size_t>(limit)) return false;
  rows->resize(static_cast<size_t>(limit));
  return true;
}

}  // namespace

DashboardRoutes::DashboardRoutes(Store* store, LiveRunTable* live, CoordinatorMetrics* metrics)
    : store_(store), live_(live), metrics_(metrics) {}

HttpResponse DashboardRoutes::Handle(const HttpRequest& request) const {
  const std::string& path = request.path;
  if (path == "/" || path == "/index.html") {
    HttpResponse r = HttpResponse::Text(200, kDashboardHtml);
    r.content_type = "text/html; charset=utf-8";
    return r;
  }
  if (path == "/readyz") {
    // Ready means the database takes a write now, not just that it opened.
    Status probe = store_->ProbeWrite();
    if (!probe.ok()) return HttpResponse::Text(503, "not ready: " + probe.message() + "\n");
    return HttpResponse::Text(200, "ready\n");
  }
  if (path == "/metrics") {
    HttpResponse r = HttpResponse::Text(200, metrics_->Scrape(*store_, *live_));
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
  }
  const std::vector<std::string> p = SplitPath(path);
  if (p.size() >= 3 && p[0] == "api" && p[1] == "v1") {
    const std::string& kind = p[2];
    if (kind == "sweeps") {
      if (p.size() == 3) return Sweeps(request);
      if (p.size() == 4) return Sweep(p[3]);
      if (p.size() == 5 && p[4] == "runs") return SweepRuns(p[3], request);
      if (p.size() == 5 && p[4] == "lr-sensitivity.svg") return LrSensitivitySvg(p[3]);
      if (p.size() == 5 && p[4] == "curves.svg") return CurvesSvg(p[3], request);
      if (p.size() == 5 && p[4] == "claims") return SweepClaims(p[3]);
    } else if (kind == "runs") {
      if (p.size() == 4) return Run(p[3]);
      if (p.size() == 5 && p[4] == "metrics") return RunMetrics(p[3], request);
      if (p.size() == 5 && p[4] == "layers.svg") return LayersSvg(p[3], request);
    } else if (kind == "workers" && p.size() == 3) {
      return Workers(request);
    }
  }
  return Error(404, "no such path: " + path);
}

HttpResponse DashboardRoutes::Sweeps(const HttpRequest& request) const {
  int64_t limit = 0, offset = 0;
  if (auto bad = ParseBounded(request, "limit", kMaxListLimit, kMaxListLimit, &limit)) return *bad;
  if (auto bad = ParseBounded(request, "offset", INT64_MAX, 0, &offset)) return *bad;
  auto sweeps = store_->ListSweeps();
  if (!sweeps.ok()) return FromStatus(sweeps.status());
  const bool truncated = Page(&*sweeps, offset, limit);
  Json list = Json::array();
  for (const SweepRow& s : *sweeps) list.push_back(SweepJson(s, false));
  return JsonResponse(Json{{"sweeps", list}, {"truncated", truncated}});
}

HttpResponse DashboardRoutes::Sweep(const std::string& id) const {
  auto sweep = store_->GetSweep(id);
  if (!sweep.ok()) return FromStatus(sweep.status());
  Json j = SweepJson(*sweep, true);
  // The sweeps promoted from this one, for links back down.
  Json children = Json::array();
  if (auto all = store_->ListSweeps(); all.ok()) {
    for (const SweepRow& s : *all) {
      if (s.parent_sweep_id == id) children.push_back(Json{{"id", s.id}, {"name", s.name}});
    }
  }
  j["promoted"] = children;
  // Cost and ETA (server/cost.h).
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  if (auto cost = LoadSweepCost(*store_, *sweep, now_ms); cost.ok()) {
    Json medians = Json::object();
    for (const auto& [task, seconds] : cost->median_run_seconds) medians[task] = seconds;
    j["cost"] = Json{{"device_seconds", cost->device_seconds},
                     {"device_hours", cost->device_seconds / 3600},
                     {"median_run_seconds", medians},
                     {"slots", cost->slots},
                     {"eta_seconds", cost->eta_seconds ? Json(*cost->eta_seconds) : Json(nullptr)},
                     {"eta_text", cost->eta_seconds ? DurationText(*cost->eta_seconds) : "unknown"},
                     {"eta_unknown_because", cost->eta_unknown_because}};
  } else {
    j["cost"] = nullptr;
  }
  return JsonResponse(j);
}

HttpResponse DashboardRoutes::SweepRuns(const std::string& id, const HttpRequest& request) const {
  int64_t limit = 0, offset = 0;
  if (auto bad = ParseBounded(request, "limit", kMaxListLimit, kMaxListLimit, &limit)) return *bad;
  if (auto bad = ParseBounded(request, "offset", INT64_MAX, 0, &offset)) return *bad;
  auto runs = store_->ListRuns(id);
  if (!runs.ok()) return FromStatus(runs.status());
  const bool truncated = Page(&*runs, offset, limit);
  const std::map<std::string, LiveRun> live = live_->Snapshot();
  Json list = Json::array();
  for (const RunRow& r : *runs) {
    auto it = live.find(r.id);
    list.push_back(RunJson(r, it == live.end() ? std::nullopt : std::optional<LiveRun>(it->second)));
  }
  return JsonResponse(Json{{"sweep", id}, {"runs", list}, {"truncated", truncated}});
}

HttpResponse DashboardRoutes::LrSensitivitySvg(const std::string& sweep_id) const {
  auto report = MakeReport(*store_, {sweep_id}, "lr-sensitivity", "svg");
  if (!report.ok()) return FromStatus(report.status());
  HttpResponse r = HttpResponse::Text(200, std::move(report->content));
  r.content_type = "image/svg+xml";
  return r;
}

HttpResponse DashboardRoutes::CurvesSvg(const std::string& sweep_id, const HttpRequest& request) const {
  auto metric_it = request.query.find("metric");
  const std::string metric = metric_it == request.query.end() ? "train/loss" : metric_it->second;
  auto runs_it = request.query.find("runs");
  const std::string which = runs_it == request.query.end() ? "running" : runs_it->second;
  if (which != "running" && which != "all") return Error(400, "runs must be running or all, not '" + which + "'");
  auto sweep = store_->GetSweep(sweep_id);
  if (!sweep.ok()) return FromStatus(sweep.status());
  auto runs = which == "running" ? store_->ListRuns(sweep_id, RunState::kRunning) : store_->ListRuns(sweep_id);
  if (!runs.ok()) return FromStatus(runs.status());

  PlotPanel panel;
  panel.title = metric;
  bool any_per_epoch = false;
  for (const RunRow& r : *runs) {
    if (panel.series.size() >= kMaxCurveRuns) break;
    auto points = store_->GetMetrics(r.id, metric);
    if (!points.ok() || points->empty()) continue;
    PlotSeries series;
    series.name = RunLabel(r);
    // A metric logged once per epoch (test/error, ...) has few points: each
    // is drawn as a marker, so a one- or two-epoch run is visible at all.
    const RunParams resolved = ResolvedRunParams(r.params);
    auto epochs = resolved.find("epochs");
    const bool per_epoch = epochs != resolved.end() && epochs->second.is_number() &&
                           static_cast<double>(points->size()) <= epochs->second.number;
    if (per_epoch) any_per_epoch = true;
    const size_t stride = (points->size() + kMaxCurvePoints - 1) / kMaxCurvePoints;
    for (size_t i = 0; i < points->size(); i += stride) {
      series.points.push_back({static_cast<double>((*points)[i].step), (*points)[i].value});
    }
    if ((points->size() - 1) % stride != 0) {  // always end at the latest point
      series.points.push_back({static_cast<double>(points->back().step), points->back().value});
    }
    if (per_epoch) {
      for (size_t i = 0; i < series.points.size(); ++i) series.marked.push_back(i);
    }
    panel.series.push_back(std::move(series));
  }
  if (panel.series.empty()) {
    HttpResponse r = HttpResponse::Text(204, "");
    return r;
  }
  LinePlotOptions options;
  options.title = sweep->name + " (" + sweep_id + "): " + metric;
  options.x_label = "step";
  options.y_label = metric;
  options.columns = 1;
  options.panel_width = 640;
  options.panel_height = 320;
  options.marker_legend = "";
  options.marker_class = any_per_epoch ? "point" : "best";
  HttpResponse r = HttpResponse::Text(200, RenderLinePlot({panel}, options));
  r.content_type = "image/svg+xml";
  return r;
}

HttpResponse DashboardRoutes::SweepClaims(const std::string& id) const {
  auto sweep = store_->GetSweep(id);
  if (!sweep.ok()) return FromStatus(sweep.status());
  // The claims span both stages (ARCHITECTURE.md section 4): Table 1's claim
  // needs the promoted sweep, Figure 1's the parent. Judge the lineage.
  std::vector<std::string> ids = {id};
  if (!sweep->parent_sweep_id.empty()) ids.push_back(sweep->parent_sweep_id);
  if (auto all = store_->ListSweeps(); all.ok()) {
    for (const SweepRow& s : *all) {
      if (s.parent_sweep_id == id) ids.push_back(s.id);
    }
  }
  auto report = MakeClaimsReport(*store_, ids, ReportFormat::kJson, /*paper=*/true);
  if (!report.ok()) return FromStatus(report.status());
  HttpResponse r = HttpResponse::Json(200, std::move(report->content));
  return r;
}

HttpResponse DashboardRoutes::LayersSvg(const std::string& id, const HttpRequest& request) const {
  auto metric_it = request.query.find("metric");
  const std::string metric = metric_it == request.query.end() ? "relative_update" : metric_it->second;
  if (std::find(std::begin(kLayerMetrics), std::end(kLayerMetrics), metric) == std::end(kLayerMetrics)) {
    return Error(400, "metric must be relative_update, at_bound_fraction, level_top_fraction or "
                      "level_bottom_fraction, not '" + metric.substr(0, 60) + "'");
  }
  auto run = store_->GetRun(id);
  if (!run.ok()) return FromStatus(run.status());
  // The names come from each metric's latest point; the series one by one.
  auto latest = store_->GetLatestMetrics(id);
  if (!latest.ok()) return FromStatus(latest.status());
  const std::string suffix = "/" + metric;
  std::vector<HeatmapRow> rows;
  for (const MetricPoint& last : *latest) {
    const std::string& name = last.name;
    if (name.rfind("layer/", 0) != 0 || name.size() <= 6 + suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    if (rows.size() >= kMaxHeatmapRows) break;
    auto points = store_->GetMetrics(id, name, -1, static_cast<int64_t>(kMaxHeatmapColumns));
    if (!points.ok()) return FromStatus(points.status());
    HeatmapRow row;
    row.name = name.substr(6, name.size() - 6 - suffix.size());
    for (const MetricPoint& pt : *points) row.cells.push_back({static_cast<double>(pt.step), pt.value});
    rows.push_back(std::move(row));
  }
  HeatmapOptions options;
  options.title = "run " + id + ": " + metric + " per tensor";
  options.x_label = "step";
  options.value_label = metric;
  options.log_scale = metric == "relative_update";
  if (!options.log_scale) {
    options.min = 0;
    options.max = 1;
  }
  options.empty_text = metric.rfind("level_", 0) == 0
                           ? "no " + metric + " logged: only int_madam runs log level shares"
                           : "this run has logged no layer metrics yet (layer_stats_per_epoch 0, or "
                             "it has not reached a layer step)";
  HttpResponse r = HttpResponse::Text(200, RenderHeatmap(rows, options));
  r.content_type = "image/svg+xml";
  return r;
}

HttpResponse DashboardRoutes::Run(const std::string& id) const {
  auto run = store_->GetRun(id);
  if (!run.ok()) return FromStatus(run.status());
  return JsonResponse(RunJson(*run, live_->Get(id)));
}

HttpResponse DashboardRoutes::RunMetrics(const std::string& id, const HttpRequest& request) const {
  std::optional<std::string> name;
  if (auto it = request.query.find("name"); it != request.query.end() && !it->second.empty()) name = it->second;
  int64_t after_step = -1;
  if (auto it = request.query.find("after_step"); it != request.query.end()) {
    try {
      size_t used = 0;
      after_step = std::stoll(it->second, &used);
      if (used != it->second.size()) throw std::invalid_argument("trailing characters");
    } catch (const std::exception&) {
      return Error(400, "after_step must be an integer, not '" + it->second + "'");
    }
  }
  int64_t limit = 0;
  if (auto bad = ParseBounded(request, "limit", kMaxSeriesLimit, kMaxSeriesLimit, &limit)) return *bad;
  // One more than asked: tells a full page from a cut one.
  auto points = store_->GetMetrics(id, name, after_step, limit + 1);
  if (!points.ok()) return FromStatus(points.status());
  const bool truncated = points->size() > static_cast<size_t>(limit);
  if (truncated) points->resize(static_cast<size_t>(limit));
  Json list = Json::array();
  for (const MetricPoint& pt : *points) {
    list.push_back(Json{{"name", pt.name}, {"step", pt.step}, {"value", Number(pt.value)}, {"time", pt.time}});
  }
  return JsonResponse(Json{{"run", id}, {"points", list}, {"truncated", truncated}});
}

HttpResponse DashboardRoutes::Workers(const HttpRequest& request) const {
  int64_t limit = 0, offset = 0;
  if (auto bad = ParseBounded(request, "limit", kMaxListLimit, kMaxListLimit, &limit)) return *bad;
  if (auto bad = ParseBounded(request, "offset", INT64_MAX, 0, &offset)) return *bad;
  auto workers = store_->ListWorkers();
  if (!workers.ok()) return FromStatus(workers.status());
  const bool truncated = Page(&*workers, offset, limit);
  Json list = Json::array();
  for (const WorkerRow& w : *workers) {
    list.push_back(Json{{"id", w.id},
                        {"name", w.name},
                        {"device", w.device},
                        {"info", w.info},
                        {"registered_at_ms", w.registered_at_ms},
                        {"last_seen_ms", w.last_seen_ms},
                        {"current_run", w.current_run}});
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  return JsonResponse(Json{{"now_ms", now_ms}, {"workers", list}, {"truncated", truncated}});
}

}  // namespace madam::server
