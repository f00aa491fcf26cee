#include "cli/sweep_commands.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <vector>

#include "cli/output.h"
#include "common/sweep_spec.h"
#include "server/cost.h"

namespace madam::cli {

namespace v1 = madam::v1;
using std::chrono::milliseconds;

namespace {

// Reads the whole sweep file, or says why it cannot.
bool ReadSweepFile(const std::string& path, std::string* text, std::string* error) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    *error = "cannot read sweep file \"" + path + "\": it is a directory";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read sweep file \"" + path + "\": " + std::strerror(errno);
    return false;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    *error = "cannot read sweep file \"" + path + "\": " + std::strerror(errno);
    return false;
  }
  *text = buffer.str();
  // The coordinator enforces the same limit; checking here turns a 4 MiB
  // transport error into a message about the file.
  const size_t max_bytes = madam::SweepLimits{}.max_bytes;
  if (text->size() > max_bytes) {
    *error = "sweep file \"" + path + "\" is " + std::to_string(text->size()) +
             " bytes; the limit is " + std::to_string(max_bytes);
    return false;
  }
  return true;
}

milliseconds Backoff(int retry) {  // retry = 1, 2, 3, ...
  return milliseconds(500LL << std::min(retry - 1, 4));
}

std::string SecondsText(milliseconds d) { return FormatNumber(d.count() / 1000.0) + "s"; }

bool IsTerminalSweepState(const std::string& state) { return state != "running" && !state.empty(); }

void PrintSweepTable(const CommandEnv& env, const google::protobuf::RepeatedPtrField<v1::Sweep>& sweeps) {
  Table table({"ID", "NAME", "STATE", "PROGRESS", "PENDING", "RUNNING", "SUCCEEDED", "DIVERGED",
               "FAILED", "CANCELLED", "CREATED"});
  for (const v1::Sweep& s : sweeps) {
    const v1::RunCounts& c = s.counts();
    table.AddRow({s.id(), s.name(), s.state(),
                  std::to_string(DoneRuns(c)) + "/" + std::to_string(TotalRuns(c)),
                  std::to_string(c.pending()), std::to_string(c.running()),
                  std::to_string(c.succeeded()), std::to_string(c.diverged()),
                  std::to_string(c.failed()), std::to_string(c.cancelled()),
                  FormatTimeMs(s.created_at_ms())});
  }
  table.Print(*env.out);
}

void PrintSweepDetails(const CommandEnv& env, const v1::Sweep& s,
                       const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  const v1::RunCounts& c = s.counts();
  std::string metric = s.metric_name();
  if (!s.metric_goal().empty()) metric += " (" + s.metric_goal() + ")";
  std::vector<std::pair<std::string, std::string>> rows = {
      {"id", s.id()},
      {"name", s.name()},
      {"state", s.state()},
      {"metric", metric},
      {"progress", std::to_string(DoneRuns(c)) + "/" + std::to_string(TotalRuns(c)) + " runs done"},
      {"pending", std::to_string(c.pending())},
      {"running", std::to_string(c.running())},
      {"succeeded", std::to_string(c.succeeded())},
      {"diverged", std::to_string(c.diverged())},
      {"failed", std::to_string(c.failed())},
      {"cancelled", std::to_string(c.cancelled())},
      {"max_concurrent", s.max_concurrent() > 0 ? std::to_string(s.max_concurrent()) : "unlimited"},
      {"max_attempts", std::to_string(s.max_attempts())},
      {"device", s.device()},
      {"created", FormatTimeMs(s.created_at_ms())},
  };
  rows.insert(rows.end(), extra.begin(), extra.end());
  PrintKeyValues(*env.out, rows);
  if (!s.parent_sweep_id().empty()) {
    *env.out << "promoted from " << s.parent_sweep_id() << ":\n";
    for (const std::string& reason : s.promotion_reasons()) *env.out << "  " << reason << '\n';
  }
}

// "0,1,2" as numbers. A token that is not an integer is a usage error; the
// coordinator judges the list itself (empty, repeats, negatives).
bool ParseSeedList(const std::string& text, std::vector<int64_t>* seeds, std::string* error) {
  std::stringstream in(text);
  std::string token;
  while (std::getline(in, token, ',')) {
    const size_t a = token.find_first_not_of(" \t"), b = token.find_last_not_of(" \t");
    if (a == std::string::npos) continue;
    token = token.substr(a, b - a + 1);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(token, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != token.size()) {
      *error = "--seeds: \"" + token + "\" is not an integer; give a list such as 0,1,2";
      return false;
    }
    seeds->push_back(v);
  }
  return true;
}

// Calls `rpc` until it answers or fails for a reason retrying cannot fix.
template <typename Call>
grpc::Status CallWithRetries(const CommandEnv& env, const char* what, Call rpc) {
  grpc::Status status;
  for (int retry = 0;; ++retry) {
    grpc::ClientContext context;
    PrepareContext(context, env.client, kSubmitDeadline);
    status = rpc(&context);
    if (status.ok() || !IsRetryable(status) || retry == kSubmitRetries) return status;
    milliseconds wait = Backoff(retry + 1);
    env.Error("no answer from the coordinator at " + env.client.address + "; retrying the " + what +
              " in " + SecondsText(wait) + " (retry " + std::to_string(retry + 1) + " of " +
              std::to_string(kSubmitRetries) + ")");
    env.sleep(wait);
  }
}

// The end of a watch: the verdict line and the exit status.
int ReportSweepEnd(const CommandEnv& env, const v1::Sweep& sweep) {
  const v1::RunCounts& c = sweep.counts();
  if (!env.json) {
    *env.out << "sweep " << sweep.id() << " " << sweep.state() << ": " << c.succeeded()
             << " succeeded, " << c.diverged() << " diverged, " << c.failed() << " failed, "
             << c.cancelled() << " cancelled\n"
             << std::flush;
  }
  if (c.failed() > 0) {
    env.Error("sweep " + sweep.id() + " ended with " + std::to_string(c.failed()) + " failed run" +
              (c.failed() == 1 ? "" : "s") + "; see `madamctl run list --sweep " + sweep.id() +
              " --state failed`");
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

std::string NewIdempotencyKey() {
  std::random_device device;
  std::mt19937_64 rng((static_cast<uint64_t>(device()) << 32) ^ device());
  static const char kHex[] = "0123456789abcdef";
  std::string key;
  for (int i = 0; i < 32; ++i) key += kHex[rng() & 15];
  return key;
}

int SweepSubmit(const CommandEnv& env, const SweepSubmitOptions& options) {
  std::string text, error;
  if (!ReadSweepFile(options.file, &text, &error)) {
    env.Error(error);
    return kExitFailure;
  }
  v1::SubmitSweepRequest request;
  request.set_file_name(options.file);
  request.set_spec_text(std::move(text));
  request.set_dry_run(options.dry_run);
  request.set_idempotency_key(NewIdempotencyKey());

  v1::SubmitSweepResponse response;
  grpc::Status status;
  for (int retry = 0;; ++retry) {
    grpc::ClientContext context;
    PrepareContext(context, env.client, kSubmitDeadline);
    response.Clear();
    status = env.stub->SubmitSweep(&context, request, &response);
    if (status.ok() || !IsRetryable(status) || retry == kSubmitRetries) break;
    milliseconds wait = Backoff(retry + 1);
    // A short note per retry; the full explanation comes once, if all fail.
    env.Error("no answer from the coordinator at " + env.client.address + " (" +
              (status.error_code() == grpc::StatusCode::UNAVAILABLE ? "UNAVAILABLE"
                                                                     : "DEADLINE_EXCEEDED") +
              "); retrying the submit in " + SecondsText(wait) + " (retry " +
              std::to_string(retry + 1) + " of " + std::to_string(kSubmitRetries) + ")");
    env.sleep(wait);
  }
  if (!status.ok()) return env.RpcFailure(status);

  if (options.dry_run) {
    if (env.json) {
      Json j = Json::object();
      j["id"] = "";
      j["runs"] = response.runs();
      j["dry_run"] = true;
      j["name"] = response.name();
      j["preview"] = Json::array();
      for (const std::string& label : response.preview()) j["preview"].push_back(label);
      *env.out << j.dump() << '\n';
    } else {
      *env.out << "valid: " << response.runs() << " run" << (response.runs() == 1 ? "" : "s");
      if (!response.name().empty()) *env.out << " (sweep " << response.name() << ")";
      *env.out << '\n';
      for (const std::string& label : response.preview()) *env.out << "  " << label << '\n';
      if (response.preview_size() > 0 && response.preview_size() < response.runs()) {
        *env.out << "  ... " << (response.runs() - response.preview_size()) << " more\n";
      }
    }
    env.out->flush();
    return kExitOk;
  }

  if (env.json) {
    Json j = Json::object();
    j["id"] = response.sweep_id();
    j["runs"] = response.runs();
    *env.out << j.dump() << '\n';
  } else {
    *env.out << "submitted sweep " << response.sweep_id() << " (" << response.runs() << " run"
             << (response.runs() == 1 ? "" : "s") << ")\n";
  }
  env.out->flush();
  if (options.wait) return SweepWatch(env, response.sweep_id());
  return kExitOk;
}

int SweepList(const CommandEnv& env) {
  grpc::ClientContext context;
  PrepareContext(context, env.client, kUnaryDeadline);
  v1::ListSweepsResponse response;
  grpc::Status status = env.stub->ListSweeps(&context, v1::ListSweepsRequest(), &response);
  if (!status.ok()) return env.RpcFailure(status);
  if (env.json) {
    Json sweeps = Json::array();
    for (const v1::Sweep& s : response.sweeps()) sweeps.push_back(SweepToJson(s));
    *env.out << Json{{"sweeps", std::move(sweeps)}}.dump() << '\n';
  } else if (response.sweeps().empty()) {
    *env.out << "no sweeps yet: submit one with `madamctl sweep submit FILE`\n";
  } else {
    PrintSweepTable(env, response.sweeps());
  }
  return kExitOk;
}

// Cost and ETA of a sweep (server/cost.h) from its runs and the workers
// madamd reports connected; a message saying why not when either call fails.
std::optional<server::SweepCost> SweepCostOf(const CommandEnv& env, const v1::Sweep& sweep,
                                             std::string* why_not) {
  v1::ListRunsResponse runs;
  {
    grpc::ClientContext context;
    PrepareContext(context, env.client, kUnaryDeadline);
    v1::ListRunsRequest request;
    request.set_sweep_id(sweep.id());
    grpc::Status status = env.stub->ListRuns(&context, request, &runs);
    if (!status.ok()) {
      *why_not = "cannot list runs: " + status.error_message();
      return std::nullopt;
    }
  }
  v1::ListWorkersResponse workers;
  {
    grpc::ClientContext context;
    PrepareContext(context, env.client, kUnaryDeadline);
    grpc::Status status = env.stub->ListWorkers(&context, v1::ListWorkersRequest(), &workers);
    if (!status.ok()) {
      *why_not = "cannot list workers: " + status.error_message();
      return std::nullopt;
    }
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  std::vector<server::RunTiming> timings;
  for (const v1::Run& r : runs.runs()) {
    server::RunState state = server::RunState::kPending;
    switch (r.state()) {
      case v1::RUN_STATE_RUNNING: state = server::RunState::kRunning; break;
      case v1::RUN_STATE_SUCCEEDED: state = server::RunState::kSucceeded; break;
      case v1::RUN_STATE_DIVERGED: state = server::RunState::kDiverged; break;
      case v1::RUN_STATE_FAILED: state = server::RunState::kFailed; break;
      case v1::RUN_STATE_CANCELLED: state = server::RunState::kCancelled; break;
      default: break;
    }
    auto task = r.params().find("task");
    auto devices = r.params().find("devices");
    const int64_t d = devices != r.params().end() && devices->second.kind_case() == v1::ParamValue::kNumber
                          ? std::max<int64_t>(1, static_cast<int64_t>(devices->second.number()))
                          : 1;
    timings.push_back({task != r.params().end() ? task->second.text() : "", state, r.started_at_ms(),
                       r.ended_at_ms(), d});
  }
  // madamd judges "connected" by its own clock; seen now stands for that.
  std::vector<server::WorkerDevices> devices;
  for (const v1::Worker& w : workers.workers()) devices.push_back({w.device(), w.connected() ? now_ms : 0});
  return server::ComputeSweepCost(timings, devices, sweep.device(), sweep.max_concurrent(), now_ms);
}

int SweepShow(const CommandEnv& env, const std::string& sweep_id) {
  grpc::ClientContext context;
  PrepareContext(context, env.client, kUnaryDeadline);
  v1::GetSweepRequest request;
  request.set_sweep_id(sweep_id);
  v1::Sweep sweep;
  grpc::Status status = env.stub->GetSweep(&context, request, &sweep);
  if (!status.ok()) return env.RpcFailure(status);
  // The cost lines are extra: a failure to read them is said, not fatal.
  std::string why_not;
  const std::optional<server::SweepCost> cost = SweepCostOf(env, sweep, &why_not);
  if (env.json) {
    Json j = SweepToJson(sweep);
    if (cost) {
      Json medians = Json::object();
      for (const auto& [task, seconds] : cost->median_run_seconds) medians[task] = seconds;
      j["cost"] = Json{{"device_seconds", cost->device_seconds},
                       {"device_hours", cost->device_seconds / 3600},
                       {"median_run_seconds", medians},
                       {"slots", cost->slots},
                       {"eta_seconds", cost->eta_seconds ? Json(*cost->eta_seconds) : Json(nullptr)},
                       {"eta_unknown_because", cost->eta_unknown_because},
                       {"waiting_because", cost->waiting_because}};
    } else {
      j["cost"] = nullptr;
    }
    *env.out << j.dump() << '\n';
  } else {
    std::vector<std::pair<std::string, std::string>> extra;
    if (cost) {
      char hours[32];
      std::snprintf(hours, sizeof hours, "%.3f", cost->device_seconds / 3600);
      std::string medians;
      for (const auto& [task, seconds] : cost->median_run_seconds) {
        medians += (medians.empty() ? "" : ", ") + (task.empty() ? "?" : task) + " " +
                   server::DurationText(seconds);
      }
      extra = {{"device_hours", hours},
               {"median_run", medians.empty() ? "none finished yet" : medians},
               {"eta", cost->eta_seconds ? server::DurationText(*cost->eta_seconds) + " on " +
                                               std::to_string(cost->slots) + " device(s)"
                                         : "unknown (" + cost->eta_unknown_because + ")"}};
      if (!cost->waiting_because.empty()) extra.push_back({"waiting", cost->waiting_because});
    } else {
      extra = {{"cost", "unavailable (" + why_not + ")"}};
    }
    PrintSweepDetails(env, sweep, extra);
  }
  return kExitOk;
}

int SweepWatch(const CommandEnv& env, const std::string& sweep_id) {
  ProgressPrinter printer(*env.out, env.out_is_tty, env.terminal_columns);
  v1::WatchSweepRequest request;
  request.set_sweep_id(sweep_id);
  int broken = 0;  // consecutive streams that broke without progress
  for (;;) {
    grpc::ClientContext context;
    // No deadline: a sweep may run for days. A broken stream reconnects.
    PrepareContext(context, env.client, milliseconds(0));
    std::unique_ptr<grpc::ClientReaderInterface<v1::SweepProgress>> reader =
        env.stub->WatchSweep(&context, request);
    v1::SweepProgress progress;
    bool have_last = false;
    v1::Sweep last;
    while (reader->Read(&progress)) {
      broken = 0;
      last = progress.sweep();
      have_last = true;
      if (env.json) {
        *env.out << ProgressToJson(progress).dump() << '\n' << std::flush;
      } else {
        printer.Draw(RenderProgress(progress));
      }
    }
    grpc::Status status = reader->Finish();
    if (status.ok() && have_last && IsTerminalSweepState(last.state())) {
      return ReportSweepEnd(env, last);
    }
    // A clean end before the sweep ended means the coordinator went away
    // politely (a restart); treat it like a broken stream.
    if (!status.ok() && status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      printer.Detach();
      return env.RpcFailure(status);
    }
    ++broken;
    if (broken > kWatchReconnects) {
      printer.Detach();
      if (status.ok()) {
        env.Error("the watch of sweep " + sweep_id + " kept ending before the sweep did; giving up");
        return kExitFailure;
      }
      return env.RpcFailure(status);
    }
    milliseconds wait = Backoff(broken);
    std::string cause = status.ok() ? std::string("the stream ended early")
                                    : DescribeRpcError(status, env.client.address);
    env.Error("lost the watch of sweep " + sweep_id + " (" + cause + "); reconnecting in " +
              SecondsText(wait) + " (try " + std::to_string(broken) + " of " +
              std::to_string(kWatchReconnects) + ")");
    printer.Detach();
    env.sleep(wait);
  }
}

int SweepCancel(const CommandEnv& env, const std::string& sweep_id) {
  grpc::ClientContext context;
  PrepareContext(context, env.client, kUnaryDeadline);
  v1::CancelSweepRequest request;
  request.set_sweep_id(sweep_id);
  v1::CancelSweepResponse response;
  grpc::Status status = env.stub->CancelSweep(&context, request, &response);
  if (!status.ok()) return env.RpcFailure(status);
  if (env.json) {
    *env.out << SweepToJson(response.sweep()).dump() << '\n';
  } else {
    const v1::RunCounts& c = response.sweep().counts();
    *env.out << "cancelled sweep " << sweep_id << " (state " << response.sweep().state() << "; "
             << c.cancelled() << " cancelled, " << c.running()
             << " running until their workers' next heartbeat)\n";
  }
  return kExitOk;
}

int SweepRerun(const CommandEnv& env, const SweepRerunOptions& options) {
  v1::RerunSweepRequest request;
  request.set_sweep_id(options.sweep_id);
  std::stringstream names(options.states);
  std::string name;
  std::set<int> seen;
  while (std::getline(names, name, ',')) {
    if (name.empty()) continue;
    std::optional<v1::RunState> state = ParseRunState(name);
    if (!state || (*state != v1::RUN_STATE_FAILED && *state != v1::RUN_STATE_DIVERGED &&
                   *state != v1::RUN_STATE_CANCELLED)) {
      env.Error("--state: cannot rerun runs in state \"" + name +
                "\"; choose from failed, diverged, cancelled");
      return kExitUsage;
    }
    if (seen.insert(*state).second) request.add_states(*state);
  }
  if (request.states().empty()) {
    env.Error("--state: name at least one of failed, diverged, cancelled");
    return kExitUsage;
  }
  grpc::ClientContext context;
  PrepareContext(context, env.client, kUnaryDeadline);
  v1::RerunSweepResponse response;
  grpc::Status status = env.stub->RerunSweep(&context, request, &response);
  if (!status.ok()) return env.RpcFailure(status);
  if (env.json) {
    Json j = Json::object();
    j["id"] = options.sweep_id;
    j["runs"] = response.runs();
    j["sweep"] = SweepToJson(response.sweep());
    *env.out << j.dump() << '\n';
  } else {
    *env.out << "requeued " << response.runs() << " run" << (response.runs() == 1 ? "" : "s")
             << " of sweep " << options.sweep_id << "\n";
  }
  return kExitOk;
}

int SweepExport(const CommandEnv& env, const SweepExportOptions& options) {
  std::string format = options.format.empty() ? (env.json ? "json" : "csv") : options.format;
  if (format != "csv" && format != "json") {
    env.Error("--format: unknown format \"" + format + "\"; choose csv or json");
    return kExitUsage;
  }
  grpc::ClientContext context;
  PrepareContext(context, env.client, kUnaryDeadline);
  v1::ExportSweepRequest request;
  request.set_sweep_id(options.sweep_id);
  v1::ExportSweepResponse response;
  grpc::Status status = env.stub->ExportSweep(&context, request, &response);
  if (!status.ok()) return env.RpcFailure(status);

  if (format == "json") {
    Json runs = Json::array();
    for (const v1::Run& run : response.runs()) {
      Json params = Json::object();
      for (const std::string& key : SortedKeys(run.params())) params[key] = ParamToJson(run.params().at(key));
      Json final_values = Json::object();
      for (const std::string& key : SortedKeys(run.final())) final_values[key] = JsonNumber(run.final().at(key));
      Json r = Json::object();
      r["id"] = run.id();
      r["state"] = RunStateName(run.state());
      r["attempts"] = run.attempts();
      r["params"] = std::move(params);
      r["final"] = std::move(final_values);
      runs.push_back(std::move(r));
    }
    Json j = Json::object();
    j["sweep"] = response.sweep().id().empty() ? options.sweep_id : response.sweep().id();
    j["runs"] = std::move(runs);
    // After the contract's keys: the sweep itself with its submitted file,
    // so that `madamctl report --from-export` recomputes the reports offline.
    grpc::ClientContext sweep_context;
    PrepareContext(sweep_context, env.client, kUnaryDeadline);
    v1::GetSweepRequest sweep_request;
    sweep_request.set_sweep_id(options.sweep_id);
    v1::Sweep sweep;
    grpc::Status sweep_status = env.stub->GetSweep(&sweep_context, sweep_request, &sweep);
    if (!sweep_status.ok()) return env.RpcFailure(sweep_status);
    Json info = SweepToJson(sweep);
    info["spec_text"] = sweep.spec_text();
    j["sweep_info"] = std::move(info);
    *env.out << j.dump() << '\n';
    return kExitOk;
  }

  std::set<std::string> param_names, metric_names;
  for (const v1::Run& run : response.runs()) {
    for (const auto& [key, value] : run.params()) param_names.insert(key);
    for (const auto& [key, value] : run.final()) metric_names.insert(key);
  }
  std::vector<std::string> header = {"id", "state", "attempts"};
  for (const std::string& p : param_names) header.push_back(p);
  for (const std::string& m : metric_names) header.push_back("final." + m);
  WriteCsvRow(*env.out, header);
  for (const v1::Run& run : response.runs()) {
    std::vector<std::string> row = {run.id(), RunStateName(run.state()), std::to_string(run.attempts())};
    for (const std::string& p : param_names) {
      auto it = run.params().find(p);
      row.push_back(it == run.params().end() ? "" : ParamToString(it->second));
    }
    for (const std::string& m : metric_names) {
      auto it = run.final().find(m);
      row.push_back(it == run.final().end() ? "" : FormatNumber(it->second));
    }
    WriteCsvRow(*env.out, row);
  }
  return kExitOk;
}

int SweepPromote(const CommandEnv& env, const SweepPromoteOptions& options) {
  v1::PromoteSweepRequest request;
  request.set_sweep_id(options.sweep_id);
  request.set_name(options.name);
  request.set_dry_run(options.dry_run);
  request.set_epochs(options.epochs);
  std::vector<int64_t> seeds;
  std::string error;
  if (!ParseSeedList(options.seeds, &seeds, &error)) {
    env.Error(error);
    return kExitUsage;
  }
  for (int64_t seed : seeds) request.add_seeds(seed);
  if (seeds.empty()) {
    env.Error("--seeds: the list is empty; give at least one seed, e.g. 0,1,2");
    return kExitUsage;
  }
  v1::PromoteSweepResponse response;
  grpc::Status status = CallWithRetries(env, "promote", [&](grpc::ClientContext* context) {
    response.Clear();
    return env.stub->PromoteSweep(context, request, &response);
  });
  if (!status.ok()) return env.RpcFailure(status);
  if (env.json) {
    Json j = Json::object();
    j["id"] = response.sweep().id();
    j["runs"] = response.runs();
    j["parent"] = options.sweep_id;
    j["dry_run"] = options.dry_run;
    j["existing"] = response.existing();
    j["reasons"] = Json::array();
    for (const std::string& r : response.reasons()) j["reasons"].push_back(r);
    j["warnings"] = Json::array();
    for (const std::string& w : response.warnings()) j["warnings"].push_back(w);
    j["spec_text"] = response.spec_text();
    *env.out << j.dump() << '\n';
    return kExitOk;
  }
  for (const std::string& w : response.warnings()) *env.err << "warning: " << w << '\n';
  if (options.dry_run) {
    *env.out << response.spec_text();
    *env.out << "# valid: " << response.runs() << " run" << (response.runs() == 1 ? "" : "s")
             << "; nothing stored (dry run)\n";
    return kExitOk;
  }
  *env.out << (response.existing() ? "already promoted: sweep " : "promoted ") << options.sweep_id
           << (response.existing() ? " made sweep " : " to sweep ") << response.sweep().id() << " ("
           << response.sweep().name() << ", " << response.runs() << " run" << (response.runs() == 1 ? "" : "s")
           << ")\n";
  for (const std::string& r : response.reasons()) *env.out << "  " << r << '\n';
  *env.out << "follow it with `madamctl sweep watch " << response.sweep().id()
           << "`, then `madamctl report table1 --sweep " << response.sweep().id() << "`\n";
  return kExitOk;
}

int SweepExtend(const CommandEnv& env, const SweepExtendOptions& options) {
  v1::ExtendSweepRequest request;
  request.set_sweep_id(options.sweep_id);
  request.set_force(options.force);
  std::vector<int64_t> seeds;
  std::string error;
  if (!ParseSeedList(options.seeds, &seeds, &error)) {
    env.Error(error);
    return kExitUsage;
  }
  for (int64_t seed : seeds) request.add_seeds(seed);
  v1::ExtendSweepResponse response;
  grpc::Status status = CallWithRetries(env, "extend", [&](grpc::ClientContext* context) {
    response.Clear();
    return env.stub->ExtendSweep(context, request, &response);
  });
  if (!status.ok()) return env.RpcFailure(status);
  if (env.json) {
    Json j = Json::object();
    j["id"] = options.sweep_id;
    j["runs_added"] = response.runs_added();
    j["sweep"] = SweepToJson(response.sweep());
    *env.out << j.dump() << '\n';
  } else {
    *env.out << "added " << response.runs_added() << " run" << (response.runs_added() == 1 ? "" : "s")
             << " to sweep " << options.sweep_id << " (now " << TotalRuns(response.sweep().counts())
             << " runs, " << response.sweep().state() << ")\n";
  }
  return kExitOk;
}

void AddSweepCommands(CLI::App& app, const CommandEnv& env, CommandAction* action) {
  CLI::App* sweep = app.add_subcommand("sweep", "Submit, follow and manage sweeps");

  auto submit_opts = std::make_shared<SweepSubmitOptions>();
  CLI::App* submit = sweep->add_subcommand("submit", "Submit a sweep file");
  submit->add_option("FILE", submit_opts->file, "Sweep file (YAML)")->required();
  submit->add_flag("--dry-run", submit_opts->dry_run, "Validate and count runs; store nothing");
  submit->add_flag("--wait", submit_opts->wait,
                   "Watch until the sweep ends; exit 1 if any run failed");
  submit->callback([&env, action, submit_opts] {
    *action = [&env, submit_opts] { return SweepSubmit(env, *submit_opts); };
  });

  CLI::App* list = sweep->add_subcommand("list", "List sweeps with their progress");
  list->callback([&env, action] { *action = [&env] { return SweepList(env); }; });

  // show, watch and cancel take one sweep id.
  struct IdCommand {
    const char* name;
    const char* help;
    int (*run)(const CommandEnv&, const std::string&);
  };
  for (const IdCommand& c : {IdCommand{"show", "Show a sweep's state and run counts", &SweepShow},
                             IdCommand{"watch", "Live progress until the sweep ends", &SweepWatch},
                             IdCommand{"cancel", "Cancel a sweep's pending and running runs",
                                       &SweepCancel}}) {
    auto id = std::make_shared<std::string>();
    CLI::App* sub = sweep->add_subcommand(c.name, c.help);
    sub->add_option("ID", *id, "Sweep id")->required();
    auto run = c.run;
    sub->callback([&env, action, id, run] { *action = [&env, id, run] { return run(env, *id); }; });
  }

  auto rerun_opts = std::make_shared<SweepRerunOptions>();
  CLI::App* rerun = sweep->add_subcommand("rerun", "Requeue a sweep's failed, diverged or cancelled runs");
  rerun->add_option("ID", rerun_opts->sweep_id, "Sweep id")->required();
  rerun->add_option("--state", rerun_opts->states,
                    "Comma-separated states to requeue (failed,diverged,cancelled)")
      ->capture_default_str();
  rerun->callback([&env, action, rerun_opts] {
    *action = [&env, rerun_opts] { return SweepRerun(env, *rerun_opts); };
  });

  auto export_opts = std::make_shared<SweepExportOptions>();
  CLI::App* exp = sweep->add_subcommand("export", "Every run with its parameters and final metrics");
  exp->add_option("ID", export_opts->sweep_id, "Sweep id")->required();
  exp->add_option("--format", export_opts->format, "csv (default) or json")
      ->check(CLI::IsMember({"csv", "json"}));
  exp->callback([&env, action, export_opts] {
    *action = [&env, export_opts] { return SweepExport(env, *export_opts); };
  });

  auto promote_opts = std::make_shared<SweepPromoteOptions>();
  CLI::App* promote = sweep->add_subcommand(
      "promote", "Make the Table 1 sweep from a finished Figure 1 sweep (best baseline lr, madam at 0.01)");
  promote->add_option("FIG1_SWEEP", promote_opts->sweep_id, "The Figure 1 sweep id")->required();
  promote->add_option("--seeds", promote_opts->seeds, "Comma-separated seeds of the new sweep")
      ->capture_default_str();
  promote->add_option("--name", promote_opts->name, "Name of the new sweep (default: from the parent's)");
  promote->add_flag("--dry-run", promote_opts->dry_run, "Print the new sweep file; create nothing");
  promote->add_option("--epochs", promote_opts->epochs,
                      "Epochs of every Table 1 run (default: the parent's; give the recipe's when "
                      "Figure 1 ran shorter than its schedule)")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  promote->callback([&env, action, promote_opts] {
    *action = [&env, promote_opts] { return SweepPromote(env, *promote_opts); };
  });

  auto extend_opts = std::make_shared<SweepExtendOptions>();
  CLI::App* extend = sweep->add_subcommand("extend", "Add the same grid's runs for more seeds");
  extend->add_option("ID", extend_opts->sweep_id, "Sweep id")->required();
  extend->add_option("--seeds", extend_opts->seeds, "Comma-separated seeds to add (present ones are skipped)")
      ->required();
  extend->add_flag("--force", extend_opts->force, "Extend a cancelled sweep too");
  extend->callback([&env, action, extend_opts] {
    *action = [&env, extend_opts] { return SweepExtend(env, *extend_opts); };
  });
}

}  // namespace madam::cli
