#include "server/coordinator_service.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "server/convert.h"
#include "server/grpc_status.h"
#include "server/promote.h"
#include "server/report.h"

namespace madam::server {
namespace {

constexpr int kPreviewRuns = 5;

std::string Describe(const std::map<std::string, std::string>& labels, const RunParams& params) {
  std::string out;
  for (const auto& [axis, label] : labels) {
    if (!out.empty()) out += " ";
    out += axis + "=" + label;
  }
  auto seed = params.find("seed");
  if (seed != params.end()) out += (out.empty() ? "" : " ") + std::string("seed=") + seed->second.ToString();
  return out;
}

Status RequireId(const std::string& value, const char* field) {
  if (value.empty()) return Status::InvalidArgument(std::string(field) + " is required");
  return Status::Ok();
}

// A parsed sweep file as the Store takes it, every run PENDING.
NewSweep ToNewSweep(const SweepSpec& spec, const std::string& text) {
  NewSweep sweep;
  sweep.name = spec.name;
  sweep.spec_text = text;
  sweep.metric_name = spec.metric_name;
  sweep.metric_goal = spec.metric_goal;
  sweep.device = spec.device;
  sweep.max_concurrent = spec.max_concurrent;
  sweep.max_attempts = spec.max_attempts;
  for (auto& run : ExpandSweep(spec)) sweep.runs.push_back(NewRun{std::move(run.params), std::move(run.labels)});
  return sweep;
}

// The dedupe key of a promote: a retried request (the same parent, seeds
// and name) finds the sweep the first one created.
std::string PromoteKey(const std::string& parent, const std::vector<int64_t>& seeds, const std::string& name,
                       int64_t epochs) {
  std::string key = "promote|" + parent + "|seeds=";
  for (size_t i = 0; i < seeds.size(); ++i) key += (i ? "," : "") + std::to_string(seeds[i]);
  key += "|name=" + name;
  // Absent for the default, so promotions made before --epochs keep their key.
  if (epochs > 0) key += "|epochs=" + std::to_string(epochs);
  return key;
}

}  // namespace

CoordinatorService::CoordinatorService(Store* store, LiveRunTable* live, SweepLimits limits)
    : store_(store), live_(live), limits_(limits) {}

grpc::Status CoordinatorService::SubmitSweep(grpc::ServerContext*, const v1::SubmitSweepRequest* req,
                                             v1::SubmitSweepResponse* resp) {
  const std::string file = req->file_name().empty() ? "<sweep>" : req->file_name();
  auto spec = ParseSweepSpec(req->spec_text(), file, limits_);
  if (!spec.ok()) return ToGrpcStatus(spec.status());
  const size_t count = CountRuns(*spec);
  resp->set_runs(static_cast<int64_t>(count));
  resp->set_name(spec->name);
  if (req->dry_run()) {
    // Expanding only the first cells needs the whole expansion today; the
    // count is capped by the limits, so this stays bounded.
    auto runs = ExpandSweep(*spec);
    for (size_t i = 0; i < runs.size() && i < kPreviewRuns; ++i) {
      resp->add_preview(Describe(runs[i].labels, runs[i].params));
    }
    return grpc::Status::OK;
  }
  NewSweep sweep = ToNewSweep(*spec, req->spec_text());
  sweep.idempotency_key = req->idempotency_key();
  auto row = store_->CreateSweep(sweep);
  if (!row.ok()) return ToGrpcStatus(row.status());
  resp->set_sweep_id(row->id);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ListSweeps(grpc::ServerContext*, const v1::ListSweepsRequest*,
                                            v1::ListSweepsResponse* resp) {
  auto sweeps = store_->ListSweeps();
  if (!sweeps.ok()) return ToGrpcStatus(sweeps.status());
  for (const auto& s : *sweeps) ToProto(s, resp->add_sweeps());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetSweep(grpc::ServerContext*, const v1::GetSweepRequest* req,
                                          v1::Sweep* resp) {
  if (auto s = RequireId(req->sweep_id(), "sweep_id"); !s.ok()) return ToGrpcStatus(s);
  auto sweep = store_->GetSweep(req->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  ToProto(*sweep, resp, /*with_spec=*/true);
  return grpc::Status::OK;
}

Status CoordinatorService::BuildProgress(const std::string& sweep_id, v1::SweepProgress* out) {
  auto sweep = store_->GetSweep(sweep_id);
  if (!sweep.ok()) return sweep.status();
  ToProto(*sweep, out->mutable_sweep());
  auto running = store_->ListRuns(sweep_id, RunState::kRunning);
  if (!running.ok()) return running.status();
  std::map<std::string, std::string> worker_names;
  if (!running->empty()) {
    auto workers = store_->ListWorkers();
    if (!workers.ok()) return workers.status();
    for (const auto& w : *workers) worker_names[w.id] = w.name.empty() ? w.id : w.name;
  }
  for (const auto& run : *running) {
    v1::RunProgress* p = out->add_running();
    p->set_run_id(run.id);
    p->mutable_labels()->insert(run.labels.begin(), run.labels.end());
    auto name = worker_names.find(run.lease_worker);
    p->set_worker(name != worker_names.end() ? name->second : run.lease_worker);
    if (auto live = live_->Get(run.id)) {
      p->set_step(live->step);
      p->set_fraction(std::clamp(live->progress, 0.0, 1.0));
      for (const char* name : {"train/loss"}) {
        auto it = live->latest.find(name);
        if (it != live->latest.end()) (*p->mutable_latest())[name] = it->second;
      }
      auto metric = live->latest.find(sweep->metric_name);
      if (metric != live->latest.end()) (*p->mutable_latest())[metric->first] = metric->second;
    }
  }
  return Status::Ok();
}

grpc::Status CoordinatorService::WatchSweep(grpc::ServerContext* ctx,
                                            const v1::WatchSweepRequest* req,
                                            grpc::ServerWriter<v1::SweepProgress>* writer) {
  if (auto s = RequireId(req->sweep_id(), "sweep_id"); !s.ok()) return ToGrpcStatus(s);
  // The caps (see the header): keyed by the bearer token's hash, never the
  // token itself.
  std::string caller;
  {
    auto auth = ctx->client_metadata().find("authorization");
    caller = auth == ctx->client_metadata().end()
                 ? std::string("-")
                 : std::to_string(std::hash<std::string>{}(std::string(auth->second.data(), auth->second.size())));
  }
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    if (watches_ >= kMaxWatches) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "too many watch streams open (" + std::to_string(kMaxWatches) +
                              "); close one or poll GetSweep");
    }
    int& mine = watches_by_caller_[caller];
    if (mine >= kMaxWatchesPerToken) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "this token has " + std::to_string(kMaxWatchesPerToken) +
                              " watch streams open, the most one token may; close one");
    }
    ++mine;
    ++watches_;
  }
  struct Release {
    CoordinatorService* self;
    std::string caller;
    ~Release() {
      std::lock_guard<std::mutex> lock(self->watch_mu_);
      --self->watches_;
      if (--self->watches_by_caller_[caller] <= 0) self->watches_by_caller_.erase(caller);
    }
  } release{this, caller};
  const int interval_ms = req->interval_ms() == 0 ? 500 : std::clamp(req->interval_ms(), 100, 10000);
  std::string last_sent;
  // Server-side cap (ARCHITECTURE.md section 9): a watch holds a sync thread, so one stream
  // lasts at most kMaxWatchStream; madamctl reconnects on UNAVAILABLE. A
  // client deadline ends it earlier (IsCancelled).
  constexpr auto kMaxWatchStream = std::chrono::minutes(30);
  const auto watch_end = std::chrono::steady_clock::now() + kMaxWatchStream;
  while (!ctx->IsCancelled() && !shutting_down_) {
    if (std::chrono::steady_clock::now() >= watch_end) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "watch streams last at most 30 minutes; watch again");
    }
    v1::SweepProgress progress;
    Status status = BuildProgress(req->sweep_id(), &progress);
    if (!status.ok()) return ToGrpcStatus(status);
    std::string encoded;
    progress.SerializeToString(&encoded);
    if (encoded != last_sent) {
      if (!writer->Write(progress)) return grpc::Status::OK;  // client went away
      last_sent = std::move(encoded);
    }
    if (progress.sweep().state() != kSweepRunning) return grpc::Status::OK;
    // Sleep in short slices so cancellation and shutdown are prompt.
    for (int waited = 0; waited < interval_ms && !ctx->IsCancelled() && !shutting_down_;
         waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "madamd is shutting down; watch again");
}

grpc::Status CoordinatorService::CancelSweep(grpc::ServerContext*, const v1::CancelSweepRequest* req,
                                             v1::CancelSweepResponse* resp) {
  if (auto s = RequireId(req->sweep_id(), "sweep_id"); !s.ok()) return ToGrpcStatus(s);
  if (auto s = store_->CancelSweep(req->sweep_id()); !s.ok()) return ToGrpcStatus(s);
  auto sweep = store_->GetSweep(req->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  ToProto(*sweep, resp->mutable_sweep());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::RerunSweep(grpc::ServerContext*, const v1::RerunSweepRequest* req,
                                            v1::RerunSweepResponse* resp) {
  if (auto s = RequireId(req->sweep_id(), "sweep_id"); !s.ok()) return ToGrpcStatus(s);
  std::vector<RunState> states;
  for (int raw : req->states()) {
    auto state = FromProto(static_cast<v1::RunState>(raw));
    if (!state || (*state != RunState::kFailed && *state != RunState::kDiverged &&
                   *state != RunState::kCancelled)) {
      return ToGrpcStatus(Status::InvalidArgument(
          "states: only failed, diverged and cancelled runs can be rerun, got " +
          v1::RunState_Name(static_cast<v1::RunState>(raw))));
    }
    states.push_back(*state);
  }
  if (states.empty()) states = {RunState::kFailed, RunState::kDiverged, RunState::kCancelled};
  auto count = store_->RerunSweep(req->sweep_id(), states);
  if (!count.ok()) return ToGrpcStatus(count.status());
  resp->set_runs(*count);
  auto sweep = store_->GetSweep(req->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  ToProto(*sweep, resp->mutable_sweep());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ExportSweep(grpc::ServerContext*, const v1::ExportSweepRequest* req,
                                             v1::ExportSweepResponse* resp) {
  if (auto s = RequireId(req->sweep_id(), "sweep_id"); !s.ok()) return ToGrpcStatus(s);
  auto sweep = store_->GetSweep(req->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  ToProto(*sweep, resp->mutable_sweep());
  auto runs = store_->ListRuns(req->sweep_id());
  if (!runs.ok()) return ToGrpcStatus(runs.status());
  for (const auto& run : *runs) ToProto(run, resp->add_runs());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ListRuns(grpc::ServerContext*, const v1::ListRunsRequest* req,
                                          v1::ListRunsResponse* resp) {
  if (auto s = RequireId(req->sweep_id(), "sweep_id"); !s.ok()) return ToGrpcStatus(s);
  std::optional<RunState> state;
  if (req->state() != v1::RUN_STATE_UNSPECIFIED) {
    state = FromProto(req->state());
    if (!state) {
      return ToGrpcStatus(Status::InvalidArgument("state: unknown run state " +
                                                  std::to_string(req->state())));
    }
  }
  auto runs = store_->ListRuns(req->sweep_id(), state);
  if (!runs.ok()) return ToGrpcStatus(runs.status());
  for (const auto& run : *runs) ToProto(run, resp->add_runs());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetRun(grpc::ServerContext*, const v1::GetRunRequest* req,
                                        v1::Run* resp) {
  if (auto s = RequireId(req->run_id(), "run_id"); !s.ok()) return ToGrpcStatus(s);
  auto run = store_->GetRun(req->run_id());
  if (!run.ok()) return ToGrpcStatus(run.status());
  ToProto(*run, resp);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetRunMetrics(grpc::ServerContext*,
                                               const v1::GetRunMetricsRequest* req,
                                               v1::GetRunMetricsResponse* resp) {
  if (auto s = RequireId(req->run_id(), "run_id"); !s.ok()) return ToGrpcStatus(s);
  std::optional<std::string> name;
  if (!req->name().empty()) name = req->name();
  auto points = store_->GetMetrics(req->run_id(), name);
  if (!points.ok()) return ToGrpcStatus(points.status());
  for (const auto& p : *points) {
    v1::MetricPoint* out = resp->add_points();
    out->set_name(p.name);
    out->set_step(p.step);
    out->set_value(p.value);
    out->set_time(p.time);
  }
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                                             v1::ListWorkersResponse* resp) {
  auto workers = store_->ListWorkers();
  if (!workers.ok()) return ToGrpcStatus(workers.status());
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  for (const auto& w : *workers) {
    v1::Worker* out = resp->add_workers();
    out->set_id(w.id);
    out->set_name(w.name);
    out->set_device(w.device);
    out->set_info(w.info);
    out->set_last_seen_ms(w.last_seen_ms);
    out->set_current_run(w.current_run);
    // A worker polls at least every few seconds while idle and heartbeats
    // while running; 30 s of silence means it is gone.
    out->set_connected(now_ms - w.last_seen_ms < 30000);
  }
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetReport(grpc::ServerContext*, const v1::GetReportRequest* req,
                                           v1::Report* resp) {
  std::vector<std::string> ids(req->sweep_ids().begin(), req->sweep_ids().end());
  ReportOptions options;
  options.paper = req->paper();
  auto report = MakeReport(*store_, ids, req->kind(), req->format(), options);
  if (!report.ok()) return ToGrpcStatus(report.status());
  resp->set_kind(req->kind());
  resp->set_format(req->format().empty() ? "md" : req->format());
  resp->set_content(std::move(report->content));
  resp->set_content_type(report->content_type);
  for (const std::string& id : ids) resp->add_sweep_ids(id);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::PromoteSweep(grpc::ServerContext*, const v1::PromoteSweepRequest* req,
                                              v1::PromoteSweepResponse* resp) {
  if (auto s = RequireId(req->sweep_id(), "sweep_id"); !s.ok()) return ToGrpcStatus(s);
  PromoteOptions options;
  if (!req->seeds().empty()) options.seeds.assign(req->seeds().begin(), req->seeds().end());
  if (auto s = ValidateSeeds(options.seeds); !s.ok()) return ToGrpcStatus(s);
  auto parent = store_->GetSweep(req->sweep_id());
  if (!parent.ok()) return ToGrpcStatus(parent.status());
  options.name = req->name().empty() ? DefaultPromotedName(parent->name) : req->name();
  options.epochs = req->epochs();
  const std::string key = PromoteKey(parent->id, options.seeds, options.name, options.epochs);
  if (!req->dry_run()) {
    auto existing = store_->FindSweepByIdempotencyKey(key);
    if (!existing.ok()) return ToGrpcStatus(existing.status());
    if (existing->has_value()) {
      const SweepRow& row = **existing;
      ToProto(row, resp->mutable_sweep(), /*with_spec=*/true);
      resp->set_spec_text(row.spec_text);
      for (const std::string& r : row.promotion_reasons) resp->add_reasons(r);
      resp->set_runs(row.counts.total());
      resp->set_existing(true);
      return grpc::Status::OK;
    }
  }
  auto runs = store_->ListRuns(parent->id);
  if (!runs.ok()) return ToGrpcStatus(runs.status());
  auto promotion = BuildPromotion(*parent, *runs, options);
  if (!promotion.ok()) return ToGrpcStatus(promotion.status());
  auto spec = ParseSweepSpec(promotion->spec_text, promotion->name + ".yaml", limits_);
  if (!spec.ok()) {
    // Most often the parent's own epochs are too few for the recipe's
    // schedule (a milestone past the last epoch): say so, with the way out.
    return ToGrpcStatus(Status::FailedPrecondition(
        "the Table 1 sweep promoted from " + parent->id + " would not be valid: " + spec.status().message() +
        (req->epochs() > 0 ? std::string()
                           : "; Table 1 runs the recipe's schedule with the parent's epochs, so give it "
                             "enough epochs with `sweep promote --epochs N`")));
  }
  resp->set_spec_text(promotion->spec_text);
  for (const std::string& r : promotion->reasons) resp->add_reasons(r);
  for (const std::string& w : promotion->warnings) resp->add_warnings(w);
  resp->set_runs(static_cast<int64_t>(CountRuns(*spec)));
  if (req->dry_run()) return grpc::Status::OK;
  NewSweep sweep = ToNewSweep(*spec, promotion->spec_text);
  sweep.idempotency_key = key;
  sweep.parent_sweep_id = parent->id;
  sweep.promotion_reasons = promotion->reasons;
  auto row = store_->CreateSweep(sweep);
  if (!row.ok()) return ToGrpcStatus(row.status());
  ToProto(*row, resp->mutable_sweep(), /*with_spec=*/true);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ExtendSweep(grpc::ServerContext*, const v1::ExtendSweepRequest* req,
                                             v1::ExtendSweepResponse* resp) {
  if (auto s = RequireId(req->sweep_id(), "sweep_id"); !s.ok()) return ToGrpcStatus(s);
  std::vector<int64_t> seeds(req->seeds().begin(), req->seeds().end());
  if (auto s = ValidateSeeds(seeds); !s.ok()) return ToGrpcStatus(s);
  auto sweep = store_->GetSweep(req->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  auto spec = ParseSweepSpec(sweep->spec_text, sweep->name, limits_);
  if (!spec.ok()) {
    return ToGrpcStatus(Status::FailedPrecondition("sweep " + sweep->id +
                                                   "'s stored file no longer parses: " + spec.status().message()));
  }
  spec->seeds = seeds;
  const size_t added_at_most = CountRuns(*spec);
  if (added_at_most > limits_.max_runs ||
      static_cast<size_t>(sweep->counts.total()) + added_at_most > limits_.max_runs) {
    return ToGrpcStatus(Status::ResourceExhausted(
        "extending sweep " + sweep->id + " by " + std::to_string(added_at_most) + " runs would pass the limit of " +
        std::to_string(limits_.max_runs) + " runs per sweep"));
  }
  std::vector<NewRun> runs;
  for (auto& run : ExpandSweep(*spec)) runs.push_back(NewRun{std::move(run.params), std::move(run.labels)});
  auto added = store_->AppendRuns(sweep->id, runs, req->force());
  if (!added.ok()) return ToGrpcStatus(added.status());
  resp->set_runs_added(*added);
  auto after = store_->GetSweep(sweep->id);
  if (!after.ok()) return ToGrpcStatus(after.status());
  ToProto(*after, resp->mutable_sweep());
  return grpc::Status::OK;
}

}  // namespace madam::server
