#include "cli/worker_commands.h"

#include "cli/output.h"

namespace madam::cli {

namespace v1 = madam::v1;

int WorkerList(const CommandEnv& env) {
  grpc::ClientContext context;
  PrepareContext(context, env.client, kUnaryDeadline);
  v1::ListWorkersResponse response;
  grpc::Status status = env.stub->ListWorkers(&context, v1::ListWorkersRequest(), &response);
  if (!status.ok()) return env.RpcFailure(status);
  if (env.json) {
    Json workers = Json::array();
    for (const v1::Worker& w : response.workers()) {
      Json j = Json::object();
      j["id"] = w.id();
      j["name"] = w.name();
      j["device"] = w.device();
      j["info"] = w.info();
      j["connected"] = w.connected();
      j["current_run"] = w.current_run();
      j["last_seen_ms"] = w.last_seen_ms();
      workers.push_back(std::move(j));
    }
    *env.out << Json{{"workers", std::move(workers)}}.dump() << '\n';
    return kExitOk;
  }
  if (response.workers().empty()) {
    *env.out << "no workers have registered: start one with `madam-worker --coordinator "
             << env.client.address << "`\n";
    return kExitOk;
  }
  Table table({"ID", "NAME", "DEVICE", "CONNECTED", "CURRENT_RUN", "LAST_SEEN"});
  int64_t now = env.now_ms ? env.now_ms() : 0;
  for (const v1::Worker& w : response.workers()) {
    table.AddRow({w.id(), w.name(), w.device(), w.connected() ? "yes" : "no",
                  w.current_run().empty() ? "-" : w.current_run(),
                  now > 0 ? FormatAge(now, w.last_seen_ms()) : FormatTimeMs(w.last_seen_ms())});
  }
  table.Print(*env.out);
  return kExitOk;
}

void AddWorkerCommands(CLI::App& app, const CommandEnv& env, CommandAction* action) {
  CLI::App* worker = app.add_subcommand("worker", "Inspect workers");
  CLI::App* list = worker->add_subcommand("list", "List workers and what they run");
  list->callback([&env, action] { *action = [&env] { return WorkerList(env); }; });
}

}  // namespace madam::cli
