#include "cli/report_commands.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

namespace madam::cli {

namespace v1 = madam::v1;

namespace {

// Reports read every run of the sweeps; give a large sweep more than the
// default unary deadline.
constexpr std::chrono::seconds kReportDeadline{60};

}  // namespace

int Report(const CommandEnv& env, const ReportOptions& options) {
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
  if (options.output.empty()) {
    *env.out << response.content();
    return kExitOk;
  }
  std::ofstream file(options.output, std::ios::binary | std::ios::trunc);
  if (file) file << response.content();
  if (file) file.close();
  if (!file) {
    env.Error("cannot write report file \"" + options.output + "\": " + std::strerror(errno));
    return kExitFailure;
  }
  return kExitOk;
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
    cmd->add_option("--sweep", opts->sweep_ids, "Sweep id (repeat to pool several sweeps)")
        ->required()
        ->take_all();
    cmd->add_option("--format", opts->format, "md (default), csv, json, latex or svg")
        ->check(CLI::IsMember({"md", "csv", "json", "latex", "svg"}));
    cmd->add_option("-o,--output", opts->output, "Write the report to FILE instead of stdout");
    cmd->add_flag("--paper", opts->paper,
                  "The paper's published numbers beside ours for its tasks, with the difference");
    cmd->callback([&env, action, opts] { *action = [&env, opts] { return Report(env, *opts); }; });
  }
}

}  // namespace madam::cli
