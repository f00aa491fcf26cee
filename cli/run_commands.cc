#include "cli/run_commands.h"

#include <memory>
#include <optional>

#include "cli/output.h"

namespace madam::cli {

namespace v1 = madam::v1;

namespace {

constexpr size_t kErrorColumnWidth = 60;

// "  name  value" lines under a heading, names aligned.
void PrintSection(std::ostream& out, const std::string& heading,
                  const std::vector<std::pair<std::string, std::string>>& rows) {
  out << heading << ":";
  if (rows.empty()) {
    out << " -\n";
    return;
  }
  out << '\n';
  size_t width = 0;
  for (const auto& [key, value] : rows) width = std::max(width, key.size());
  for (const auto& [key, value] : rows) {
    out << "  " << key << std::string(width - key.size() + 2, ' ') << value << '\n';
  }
}

}  // namespace

int RunList(const CommandEnv& env, const RunListOptions& options) {
  v1::ListRunsRequest request;
  request.set_sweep_id(options.sweep_id);
  if (!options.state.empty()) {
    std::optional<v1::RunState> state = ParseRunState(options.state);
    if (!state) {
      env.Error("--state: unknown run state \"" + options.state +
                "\"; choose from pending, running, succeeded, diverged, failed, cancelled");
      return kExitUsage;
    }
    request.set_state(*state);
  }
  // The sweep names the metric for the FINAL column (and an unknown id fails
  // here with the server's message).
  v1::Sweep sweep;
  {
    grpc::ClientContext context;
    PrepareContext(context, env.client, kUnaryDeadline);
    v1::GetSweepRequest get;
    get.set_sweep_id(options.sweep_id);
    grpc::Status status = env.stub->GetSweep(&context, get, &sweep);
    if (!status.ok()) return env.RpcFailure(status);
  }
  grpc::ClientContext context;
  PrepareContext(context, env.client, kUnaryDeadline);
  v1::ListRunsResponse response;
  grpc::Status status = env.stub->ListRuns(&context, request, &response);
  if (!status.ok()) return env.RpcFailure(status);

  if (env.json) {
    Json runs = Json::array();
    for (const v1::Run& run : response.runs()) runs.push_back(RunToJson(run));
    *env.out << Json{{"runs", std::move(runs)}}.dump() << '\n';
    return kExitOk;
  }
  if (response.runs().empty()) {
    *env.out << "no runs" << (options.state.empty() ? "" : " in state " + options.state)
             << " in sweep " << options.sweep_id << '\n';
    return kExitOk;
  }
  const std::string& metric = sweep.metric_name();
  Table table({"ID", "STATE", "ATTEMPTS", "LABELS", "FINAL(" + metric + ")", "ERROR"});
  for (const v1::Run& run : response.runs()) {
    auto final_it = run.final().find(metric);
    table.AddRow({run.id(), RunStateName(run.state()), std::to_string(run.attempts()),
                  JoinLabels(run.labels()),
                  final_it == run.final().end() ? "-" : FormatNumber(final_it->second),
                  Abbreviate(run.last_error(), kErrorColumnWidth)});
  }
  table.Print(*env.out);
  return kExitOk;
}

int RunShow(const CommandEnv& env, const std::string& run_id) {
  grpc::ClientContext context;
  PrepareContext(context, env.client, kUnaryDeadline);
  v1::GetRunRequest request;
  request.set_run_id(run_id);
  v1::Run run;
  grpc::Status status = env.stub->GetRun(&context, request, &run);
  if (!status.ok()) return env.RpcFailure(status);
  if (env.json) {
    *env.out << RunToJson(run).dump() << '\n';
    return kExitOk;
  }
  std::string attempts = std::to_string(run.attempts());
  if (run.max_attempts() > 0) attempts += " of " + std::to_string(run.max_attempts());
  PrintKeyValues(*env.out, {
      {"id", run.id()},
      {"sweep", run.sweep_id()},
      {"index", std::to_string(run.index())},
      {"state", RunStateName(run.state())},
      {"attempts", attempts},
      {"labels", run.labels().empty() ? "-" : JoinLabels(run.labels())},
      {"worker", run.worker().empty() ? "-" : run.worker()},
      {"lease_epoch", std::to_string(run.lease_epoch())},
      {"started", FormatTimeMs(run.started_at_ms())},
      {"ended", FormatTimeMs(run.ended_at_ms())},
      {"cancel_requested", run.cancel_requested() ? "yes" : "no"},
      {"last_error", run.last_error().empty() ? "-" : run.last_error()},
  });
  std::vector<std::pair<std::string, std::string>> params, final_values;
  for (const std::string& key : SortedKeys(run.params())) params.emplace_back(key, ParamToString(run.params().at(key)));
  for (const std::string& key : SortedKeys(run.final())) final_values.emplace_back(key, FormatNumber(run.final().at(key)));
  PrintSection(*env.out, "params", params);
  PrintSection(*env.out, "final", final_values);
  return kExitOk;
}

int RunMetrics(const CommandEnv& env, const RunMetricsOptions& options) {
  std::string format = options.format.empty() ? (env.json ? "json" : "csv") : options.format;
  if (format != "csv" && format != "json") {
    env.Error("--format: unknown format \"" + format + "\"; choose csv or json");
    return kExitUsage;
  }
  grpc::ClientContext context;
  PrepareContext(context, env.client, kUnaryDeadline);
  v1::GetRunMetricsRequest request;
  request.set_run_id(options.run_id);
  request.set_name(options.name);
  v1::GetRunMetricsResponse response;
  grpc::Status status = env.stub->GetRunMetrics(&context, request, &response);
  if (!status.ok()) return env.RpcFailure(status);
  if (format == "json") {
    Json points = Json::array();
    for (const v1::MetricPoint& p : response.points()) points.push_back(MetricPointToJson(p));
    Json j = Json::object();
    j["run"] = options.run_id;
    j["points"] = std::move(points);
    *env.out << j.dump() << '\n';
    return kExitOk;
  }
  WriteCsvRow(*env.out, {"name", "step", "value", "time"});
  for (const v1::MetricPoint& p : response.points()) {
    WriteCsvRow(*env.out, {p.name(), std::to_string(p.step()), FormatNumber(p.value()), FormatNumber(p.time())});
  }
  return kExitOk;
}

void AddRunCommands(CLI::App& app, const CommandEnv& env, CommandAction* action) {
  CLI::App* run = app.add_subcommand("run", "Inspect the runs of a sweep");

  auto list_opts = std::make_shared<RunListOptions>();
  CLI::App* list = run->add_subcommand("list", "List a sweep's runs");
  list->add_option("--sweep", list_opts->sweep_id, "Sweep id")->required();
  list->add_option("--state", list_opts->state,
                   "Only runs in this state (pending, running, succeeded, diverged, failed, cancelled)");
  list->callback([&env, action, list_opts] {
    *action = [&env, list_opts] { return RunList(env, *list_opts); };
  });

  auto show_id = std::make_shared<std::string>();
  CLI::App* show = run->add_subcommand("show", "Show every field of a run");
  show->add_option("RUN", *show_id, "Run id")->required();
  show->callback([&env, action, show_id] {
    *action = [&env, show_id] { return RunShow(env, *show_id); };
  });

  auto metrics_opts = std::make_shared<RunMetricsOptions>();
  CLI::App* metrics = run->add_subcommand("metrics", "A run's metric points");
  metrics->add_option("RUN", metrics_opts->run_id, "Run id")->required();
  metrics->add_option("--name", metrics_opts->name, "Only this metric (e.g. train/loss)");
  metrics->add_option("--format", metrics_opts->format, "csv (default) or json")
      ->check(CLI::IsMember({"csv", "json"}));
  metrics->callback([&env, action, metrics_opts] {
    *action = [&env, metrics_opts] { return RunMetrics(env, *metrics_opts); };
  });
}

}  // namespace madam::cli
