#include "cli/report_commands.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/param_json.h"
#include "server/report.h"

namespace madam::cli {

namespace v1 = madam::v1;

namespace {

// Reports read every run of the sweeps; give a large sweep more than the
// default unary deadline.
constexpr std::chrono::seconds kReportDeadline{60};

int WriteReport(const CommandEnv& env, const ReportOptions& options, const std::string& content) {
  if (options.output.empty()) {
    *env.out << content;
    return kExitOk;
  }
  std::ofstream file(options.output, std::ios::binary | std::ios::trunc);
  if (file) file << content;
  if (file) file.close();
  if (!file) {
    env.Error("cannot write report file \"" + options.output + "\": " + std::strerror(errno));
    return kExitFailure;
  }
  return kExitOk;
}

// The stand-in lease holder of exported runs (see ReportFromExports).
constexpr const char* kExportWorker = "(export)";

// One `sweep export --format json` file as the rows a report reads. The
// message names the file and the key that is missing or malformed.
Result<server::ReportSweep> ReadExport(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status::NotFound("--from-export: cannot read \"" + path + "\": " + std::strerror(errno));
  std::stringstream text;
  text << file.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  auto bad = [&path](const std::string& what) {
    return Status::InvalidArgument("--from-export: \"" + path + "\" is not a `madamctl sweep export --format json` file: " + what);
  };
  if (j.is_discarded()) return bad("not JSON");
  if (!j.is_object()) return bad("not a JSON object");
  const auto info = j.find("sweep_info");
  if (info == j.end() || !info->is_object()) {
    return bad("no \"sweep_info\" (exports written before it was added lack the sweep's file; export again)");
  }
  auto text_of = [](const nlohmann::json& o, const char* key) -> std::optional<std::string> {
    auto it = o.find(key);
    if (it == o.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  server::ReportSweep out;
  auto id = text_of(*info, "id");
  auto spec_text = text_of(*info, "spec_text");
  auto metric = info->find("metric");
  if (!id || id->empty()) return bad("sweep_info.id missing");
  if (!spec_text) return bad("sweep_info.spec_text missing");
  if (metric == info->end() || !metric->is_object() || !text_of(*metric, "name") || !text_of(*metric, "goal")) {
    return bad("sweep_info.metric needs \"name\" and \"goal\"");
  }
  out.sweep.id = *id;
  out.sweep.name = text_of(*info, "name").value_or("");
  out.sweep.spec_text = *spec_text;
  out.sweep.metric_name = *text_of(*metric, "name");
  out.sweep.metric_goal = *text_of(*metric, "goal");
  out.sweep.state = text_of(*info, "state").value_or("");
  const auto runs = j.find("runs");
  if (runs == j.end() || !runs->is_array()) return bad("\"runs\" is not an array");
  int64_t index = 0;
  for (const nlohmann::json& r : *runs) {
    const std::string where = "runs[" + std::to_string(index) + "]";
    if (!r.is_object()) return bad(where + " is not an object");
    server::RunRow row;
    row.sweep_id = out.sweep.id;
    row.index = index++;
    auto run_id = text_of(r, "id");
    auto state_name = text_of(r, "state");
    if (!run_id) return bad(where + ".id missing");
    std::optional<server::RunState> state;
    if (state_name) state = server::ParseRunState(*state_name);
    if (!state) return bad(where + ".state missing or unknown");
    row.id = *run_id;
    row.state = *state;
    // An export names no lease holder; the provenance says so instead of
    // claiming that no run was leased.
    if (row.state != server::RunState::kPending) row.lease_worker = kExportWorker;
    auto params = r.find("params");
    if (params == r.end() || !params->is_object()) return bad(where + ".params is not an object");
    row.params = ParamsFromJsonObject(*params);
    auto finals = r.find("final");
    if (finals != r.end()) {
      if (!finals->is_object()) return bad(where + ".final is not an object");
      // Non-finite values are exported as null: NaN here, as the store keeps them.
      for (const auto& [name, value] : finals->items()) {
        if (value.is_number()) {
          row.final[name] = value.get<double>();
        } else if (value.is_null()) {
          row.final[name] = std::numeric_limits<double>::quiet_NaN();
        } else {
          return bad(where + ".final." + name + " is not a number");
        }
      }
    }
    switch (row.state) {
      case server::RunState::kPending: ++out.sweep.counts.pending; break;
      case server::RunState::kRunning: ++out.sweep.counts.running; break;
      case server::RunState::kSucceeded: ++out.sweep.counts.succeeded; break;
      case server::RunState::kDiverged: ++out.sweep.counts.diverged; break;
      case server::RunState::kFailed: ++out.sweep.counts.failed; break;
      case server::RunState::kCancelled: ++out.sweep.counts.cancelled; break;
    }
    out.runs.push_back(std::move(row));
  }
  return out;
}

int ReportFromExports(const CommandEnv& env, const ReportOptions& options) {
  server::ReportInput input;
  input.build = server::BuildInfo::Current();
  server::WorkerRow unknown;
  unknown.id = kExportWorker;
  unknown.device = "not in the export";
  input.workers[kExportWorker] = unknown;
  for (const std::string& path : options.exports) {
    auto sweep = ReadExport(path);
    if (!sweep.ok()) {
      env.Error(sweep.status().message());
      return kExitFailure;
    }
    input.sweeps.push_back(std::move(*sweep));
  }
  std::string format = options.format.empty() ? (env.json ? "json" : "md") : options.format;
  server::ReportOptions report_options;
  report_options.paper = options.paper;
  auto report = server::MakeReportFromInput(input, options.kind, format, report_options);
  if (!report.ok()) {
    env.Error(report.status().message());
    return kExitFailure;
  }
  return WriteReport(env, options, report->content);
}

}  // namespace

int Report(const CommandEnv& env, const ReportOptions& options) {
  if (!options.exports.empty()) return ReportFromExports(env, options);
  grpc::ClientContext context;
  PrepareContext(context, env.client, kReportDeadline);
  v1::GetReportRequest request;
  for (const std::string& id : options.sweep_ids) request.add_sweep_ids(id);
  request.set_kind(options.kind);
  request.set_format(options.format.empty() ? (env.json ? "json" : "md") : options.format);
  request.set_paper(options.paper);
  v1::Report response;
  grpc::Status status = env.stub->GetReport(&context, request, &response);
  if (!status.ok()) return env.RpcFailure(status);
  return WriteReport(env, options, response.content());
}

void AddReportCommands(CLI::App& app, const CommandEnv& env, CommandAction* action) {
  CLI::App* report = app.add_subcommand("report", "Regenerate the paper's figure and tables from stored results");
  struct Kind {
    const char* name;
    const char* help;
  };
  for (const Kind& kind : {Kind{"lr-sensitivity", "Figure 1: value = best error / error per optimizer and lr"},
                           Kind{"table1", "Table 1: SGD and Adam at their best lr against Madam at lr 0.01"},
                           Kind{"table2", "Table 2: FP32 Madam against each bit width of int_madam"},
                           Kind{"claims", "Each claim of the paper judged on the sweeps' runs (md or json)"}}) {
    auto opts = std::make_shared<ReportOptions>();
    opts->kind = kind.name;
    CLI::App* cmd = report->add_subcommand(kind.name, kind.help);
    CLI::Option* sweeps =
        cmd->add_option("--sweep", opts->sweep_ids, "Sweep id (repeat to pool several sweeps)")->take_all();
    CLI::Option* exports =
        cmd->add_option("--from-export", opts->exports,
                        "Compute offline from `sweep export --format json` FILEs (repeat to pool), no coordinator")
            ->take_all();
    sweeps->excludes(exports);
    exports->excludes(sweeps);
    cmd->add_option("--format", opts->format, "md (default), csv, json, latex or svg")
        ->check(CLI::IsMember({"md", "csv", "json", "latex", "svg"}));
    cmd->add_option("-o,--output", opts->output, "Write the report to FILE instead of stdout");
    cmd->add_flag("--paper", opts->paper,
                  "The paper's published numbers beside ours for its tasks, with the difference");
    cmd->callback([&env, action, opts] {
      if (opts->sweep_ids.empty() && opts->exports.empty()) {
        throw CLI::RequiredError("--sweep or --from-export");
      }
      *action = [&env, opts] { return Report(env, *opts); };
    });
  }
}

}  // namespace madam::cli
