#include "cli/theory_commands.h"

#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/output.h"
#include "common/catalogue.h"
#include "common/theory.h"

namespace madam::cli {
namespace {

std::string Sig(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

int Theory(const CommandEnv& env, const TheoryOptions& o) {
  int depth = o.depth;
  if (!o.model.empty()) {
    const TaskInfo* task = FindTask(o.model);
    if (task == nullptr) {
      env.Error("--model: unknown task \"" + o.model + "\"");
      return kExitUsage;
    }
    if (depth != -1 && depth != task->depth) {
      env.Error("--depth " + std::to_string(depth) + " and --model " + o.model + " (depth " +
                std::to_string(task->depth) + ") disagree: give one");
      return kExitUsage;
    }
    depth = task->depth;
  }
  if (depth < 1) {
    env.Error(depth == -1 ? "give --depth L (layers, >= 1) or --model TASK"
                                              : "--depth must be at least 1, got " + std::to_string(depth));
    return kExitUsage;
  }
  if (!(o.cos > 0 && o.cos <= 1)) {
    env.Error("--cos must be in (0, 1], got " + FormatNumber(o.cos));
    return kExitUsage;
  }
  const double max_lr = Theorem1MaxLr(depth, o.cos);
  if (env.json) {
    Json examples = Json::array();
    for (const auto& e : Theorem1PaperExamples()) {
      examples.push_back(Json{{"depth", e.depth},
                              {"max_lr", Theorem1MaxLr(e.depth, kPaperCosGamma)},
                              {"paper_lr", e.paper_lr}});
    }
    Json j{{"depth", depth}, {"cos", o.cos}, {"max_lr", max_lr}};
    if (!o.model.empty()) j["model"] = o.model;
    j["examples"] = std::move(examples);
    *env.out << j.dump() << '\n';
    return kExitOk;
  }
  *env.out << "Theorem 1 (the paper, section 3): the multiplicative update decreases the loss "
              "when eta < (1 + cos gamma)^(1/L) - 1\n";
  *env.out << "L = " << depth << (o.model.empty() ? "" : " (" + o.model + ")") << ", cos gamma = "
           << Sig(o.cos) << (std::fabs(o.cos - kPaperCosGamma) < 1e-12 ? " (gamma = pi/4, the paper's)" : "")
           << ": eta < " << Sig(max_lr) << "\n";
  *env.out << "the paper's examples (gamma = pi/4):";
  for (const auto& e : Theorem1PaperExamples()) {
    *env.out << "  L = " << e.depth << ": eta < " << Sig(Theorem1MaxLr(e.depth, kPaperCosGamma))
             << " (paper: " << Sig(e.paper_lr) << ")";
  }
  *env.out << "\n";
  return kExitOk;
}

void AddTheoryCommands(CLI::App& app, const CommandEnv& env, CommandAction* action) {
  auto opts = std::make_shared<TheoryOptions>();
  CLI::App* cmd = app.add_subcommand(
      "theory", "The learning rate the paper's Theorem 1 guarantees descent below, for a depth");
  cmd->add_option("--depth", opts->depth, "Network depth L (layers, >= 1)");
  cmd->add_option("--model", opts->model, "A task: its network's depth from the catalogue");
  cmd->add_option("--cos", opts->cos,
                  "cos of the angle between |gradient| and |weights|, in (0, 1] (default cos(pi/4), "
                  "the paper's)");
  cmd->callback([&env, action, opts] { *action = [&env, opts] { return Theory(env, *opts); }; });
}

}  // namespace madam::cli
