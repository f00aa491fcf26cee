// DashboardRoutes: what madamd serves over HTTP (ARCHITECTURE.md section 8) —
// the dashboard page, /metrics and the JSON API under /api/v1/ that feeds
// the page. It routes HttpServer requests; HttpServer does the transport.
//
//   GET /                                   the dashboard (one self-contained page)
//   GET /metrics                            Prometheus text exposition 0.0.4
//   GET /readyz                             200 once a write commits, else 503
//   GET /api/v1/sweeps                      {"sweeps": [sweep...]}
//   GET /api/v1/sweeps/{id}                 sweep (with spec_text; "parent" and
//                                           "promotion_reasons" of a promoted sweep,
//                                           "promoted": the sweeps made from it;
//                                           "cost": device-hours, median run time per
//                                           task and ETA, server/cost.h)
//   GET /api/v1/sweeps/{id}/runs            {"sweep": id, "runs": [run...]}
//   GET /api/v1/sweeps/{id}/lr-sensitivity.svg   Figure 1 of the sweep (report module)
//   GET /api/v1/sweeps/{id}/curves.svg?metric=M&runs=running|all
//                                           metric M against step, a line per run
//                                           (a per-epoch metric with a marker per point;
//                                           legends name numbers by common/number_text.h)
//   GET /api/v1/sweeps/{id}/claims          the claims scorecard (server/claims.h,
//                                           `madamctl report claims --format json
//                                           --paper`) judged on the sweep, the sweep
//                                           it was promoted from and those promoted
//                                           from it
//   GET /api/v1/runs/{id}                   run
//   GET /api/v1/runs/{id}/layers.svg?metric=M
//                                           per-layer telemetry as a tensor-by-step
//                                           heatmap; M is one of kLayerMetrics
//                                           (default relative_update, log colour
//                                           scale; the fractions linear 0..1); a run
//                                           without layer metrics gets an empty-state
//                                           SVG (200)
//   GET /api/v1/runs/{id}/metrics?name=M&after_step=N
//                                           {"run": id, "points": [{name, step, value, time}]}
//   GET /api/v1/workers                     {"workers": [worker...]}
// Paging (ARCHITECTURE.md section 9: every answer is bounded): the list
// routes (sweeps, a sweep's runs, workers) take `limit` (at most
// kMaxListLimit, the default) and `offset`; the series route takes `limit`
// (at most kMaxSeriesLimit points, the default) and `after_step`. A bounded
// answer says so with "truncated": true. A limit over its cap is 400 naming
// the cap.
// Errors are JSON {"error": message} with 400 (bad parameter), 404 (unknown
// id or path), 409 (a report the sweep has no results for yet), 503 (store
// unavailable) or 500.
//
// Thread-safety: Handle() may be called concurrently from the HTTP threads;
// the object holds no mutable state of its own (Store, LiveRunTable and
// CoordinatorMetrics are thread-safe). All pointers must outlive it.
#pragma once

#include "server/http_server.h"
#include "server/live_runs.h"
#include "server/metrics.h"
#include "server/store.h"

namespace madam::server {

class DashboardRoutes {
 public:
  static constexpr int64_t kMaxListLimit = 10000;
  static constexpr int64_t kMaxSeriesLimit = 200000;
  // The per-tensor metrics the worker logs as layer/<tensor>/<name>.
  static constexpr const char* kLayerMetrics[] = {"relative_update", "at_bound_fraction",
                                                  "level_top_fraction", "level_bottom_fraction"};

  DashboardRoutes(Store* store, LiveRunTable* live, CoordinatorMetrics* metrics);

  HttpResponse Handle(const HttpRequest& request) const;

 private:
  HttpResponse Sweeps(const HttpRequest& request) const;
  HttpResponse Sweep(const std::string& id) const;
  HttpResponse SweepRuns(const std::string& id, const HttpRequest& request) const;
  HttpResponse LrSensitivitySvg(const std::string& sweep_id) const;
  HttpResponse CurvesSvg(const std::string& sweep_id, const HttpRequest& request) const;
  HttpResponse SweepClaims(const std::string& id) const;
  HttpResponse Run(const std::string& id) const;
  HttpResponse LayersSvg(const std::string& id, const HttpRequest& request) const;
  HttpResponse RunMetrics(const std::string& id, const HttpRequest& request) const;
  HttpResponse Workers(const HttpRequest& request) const;

  Store* store_;
  LiveRunTable* live_;
  CoordinatorMetrics* metrics_;
};

// The dashboard page (HTML with inline CSS and JavaScript), embedded in the
// binary at build time from server/dashboard/index.html.
extern const char* const kDashboardHtml;

}  // namespace madam::server
