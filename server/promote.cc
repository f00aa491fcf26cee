#include "server/promote.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/catalogue.h"
#include "common/number_text.h"
#include "common/sweep_spec.h"

namespace madam::server {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr size_t kNamedPendingRuns = 5;

// Parameters the promoted file writes itself, or that Figure 1's fixed-eta
// rule wrote into the parent's runs (common/sweep_spec.h): never carried.
bool IsCarried(const std::string& name, bool parent_is_figure1) {
  if (name == "seed" || name == "recipe") return false;
  if (parent_is_figure1 && (name == "lr_schedule" || name == "warmup_epochs")) return false;
  return true;
}

std::string Text(const RunParams& p, const char* name) {
  auto it = p.find(name);
  return it == p.end() ? "" : it->second.is_string() ? it->second.text : it->second.ToString();
}

// A canonical key of parameters, for grouping.
std::string Key(const RunParams& p) {
  std::string key;
  for (const auto& [k, v] : p) key += k + '=' + v.ToString() + (v.is_string() ? "$" : "#") + '\x1f';
  return key;
}

// A value as YAML flow text: numbers and lists as themselves, strings
// double-quoted (JSON string syntax is valid YAML).
std::string YamlString(const std::string& s) {
  // Plain names (sgd, fmnist-mlp, test/error) stay bare; anything YAML
  // could read as another type, or that holds other characters, is quoted.
  bool plain = !s.empty() && std::isalpha(static_cast<unsigned char>(s[0]));
  for (unsigned char c : s) plain = plain && (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '/');
  static const std::set<std::string> kReserved = {"y", "n", "yes", "no", "true", "false", "on", "off", "null",
                                                  "Y", "N", "Yes", "No", "True", "False", "On", "Off", "Null",
                                                  "YES", "NO", "TRUE", "FALSE", "ON", "OFF", "NULL",
                                                  "inf", "Inf", "INF", "nan", "NaN", "NAN"};
  if (plain && !kReserved.count(s)) return s;
  return nlohmann::json(s).dump();
}

std::string YamlValue(const ParamValue& v) {
  if (v.is_string()) return YamlString(v.text);
  return v.ToString();
}

// One cell of a parent sweep without its lr (and seed): its runs by lr.
struct Group {
  RunParams params;  // carried parameters, lr excluded
  std::string task, optimizer;
  std::map<double, std::vector<double>> values_by_lr;  // lr -> per-seed values (worst for bad runs)
  std::vector<RunParams> cells;  // B-bit Madam: every distinct cell with its lr
};

// Cell parameter order in the promoted file: task, optimizer, bits, the
// rest by name, lr last, so labels read "task/optimizer/..." (common/sweep_spec.h).
std::vector<std::string> OrderedKeys(const RunParams& cell) {
  std::vector<std::string> keys;
  for (const char* first : {"task", "optimizer", "bits"}) {
    if (cell.count(first)) keys.push_back(first);
  }
  for (const auto& [k, v] : cell) {
    (void)v;
    if (k != "task" && k != "optimizer" && k != "bits" && k != "lr") keys.push_back(k);
  }
  if (cell.count("lr")) keys.push_back("lr");
  return keys;
}

struct Cell {
  RunParams params;    // every carried parameter, lr included
  std::string reason;  // without the cell's own description (added once the file's layout is known)
};

std::string SeedsText(size_t n) { return std::to_string(n) + (n == 1 ? " seed" : " seeds"); }

std::string LrRange(const std::map<double, std::vector<double>>& by_lr) {
  if (by_lr.empty()) return "no lr";
  const double lo = by_lr.begin()->first, hi = by_lr.rbegin()->first;
  return std::to_string(by_lr.size()) + (by_lr.size() == 1 ? " lr " : " lrs ") + ShortNumber(lo) +
         (by_lr.size() == 1 ? "" : ".." + ShortNumber(hi));
}

}  // namespace

Status ValidateSeeds(const std::vector<int64_t>& seeds) {
  if (seeds.empty()) return Status::InvalidArgument("seeds: the list is empty; give at least one seed, e.g. 0,1,2");
  std::set<int64_t> seen;
  for (int64_t seed : seeds) {
    if (seed < 0) return Status::InvalidArgument("seeds: " + std::to_string(seed) + " is negative; seeds are >= 0");
    if (!seen.insert(seed).second) {
      return Status::InvalidArgument("seeds: " + std::to_string(seed) + " is given twice");
    }
  }
  return Status::Ok();
}

std::string DefaultPromotedName(const std::string& parent_name) {
  if (parent_name.rfind("fig1-", 0) == 0) return "table1-" + parent_name.substr(5);
  return parent_name + "-table1";
}

Result<Promotion> BuildPromotion(const SweepRow& parent, const std::vector<RunRow>& runs,
                                 const PromoteOptions& options) {
  MADAM_RETURN_IF_ERROR(ValidateSeeds(options.seeds));
  if (options.epochs < 0 || options.epochs > 100000) {
    return Status::InvalidArgument("epochs: " + std::to_string(options.epochs) +
                                   " is out of range; give 1..100000, or 0 for the parent's");
  }
  auto spec = ParseSweepSpec(parent.spec_text, parent.name);
  if (!spec.ok()) {
    return Status::FailedPrecondition("sweep " + parent.id + "'s stored file no longer parses: " +
                                      spec.status().message());
  }
  if (spec->stage == SweepStage::kTable2) {
    return Status::FailedPrecondition(
        "sweep " + parent.id + " is a Table 2 sweep (table: 2): promote builds Table 1 from a Figure 1 "
        "sweep (figure: 1) with an lr axis; report it with `madamctl report table2 --sweep " + parent.id + "`");
  }
  if (spec->stage == SweepStage::kTable1) {
    return Status::FailedPrecondition(
        "sweep " + parent.id + " is already a Table 1 sweep (table: 1); promote a Figure 1 sweep "
        "(figure: 1), or report this one with `madamctl report table1 --sweep " + parent.id + "`");
  }
  bool lr_axis = false;
  for (const Axis& axis : spec->axes) {
    for (const AxisValue& v : axis.values) lr_axis = lr_axis || v.params.count("lr") > 0;
  }
  if (!lr_axis) {
    return Status::FailedPrecondition(
        "sweep " + parent.id + " has no lr axis: promote picks each baseline's best lr from a grid "
        "over lr (grid: {lr: ...}), and this sweep runs one lr per cell");
  }
  std::vector<std::string> unfinished;
  for (const RunRow& r : runs) {
    if (!IsTerminal(r.state)) unfinished.push_back(r.id + " (" + RunStateName(r.state) + ")");
  }
  if (!unfinished.empty()) {
    std::string names;
    for (size_t i = 0; i < unfinished.size() && i < kNamedPendingRuns; ++i) {
      names += (i ? ", " : "") + unfinished[i];
    }
    if (unfinished.size() > kNamedPendingRuns) {
      names += " and " + std::to_string(unfinished.size() - kNamedPendingRuns) + " more";
    }
    return Status::FailedPrecondition(
        "sweep " + parent.id + " is not finished: " + std::to_string(unfinished.size()) +
        (unfinished.size() == 1 ? " run is" : " runs are") + " still pending or running: " + names +
        "; wait with `madamctl sweep watch " + parent.id + "`, then promote");
  }

  const std::string& metric = parent.metric_name;
  const bool minimize = GoalOfMetric(metric).value_or(parent.metric_goal == "maximize"
                                                          ? MetricGoal::kMaximize
                                                          : MetricGoal::kMinimize) == MetricGoal::kMinimize;
  const double worst = minimize ? kInf : -kInf;
  const bool figure1 = spec->stage == SweepStage::kFigure1;

  // Groups in order of first appearance.
  std::vector<Group> groups;
  std::map<std::string, size_t> group_of;
  std::vector<std::string> task_order;
  for (const RunRow& r : runs) {
    RunParams carried;
    for (const auto& [k, v] : r.params) {
      if (IsCarried(k, figure1)) carried[k] = v;
    }
    double lr = std::numeric_limits<double>::quiet_NaN();
    if (auto it = carried.find("lr"); it != carried.end() && it->second.is_number()) lr = it->second.number;
    RunParams without_lr = carried;
    without_lr.erase("lr");
    const std::string key = Key(without_lr);
    auto [it, inserted] = group_of.emplace(key, groups.size());
    if (inserted) {
      Group g;
      g.params = without_lr;
      g.task = Text(without_lr, "task");
      g.optimizer = Text(without_lr, "optimizer");
      groups.push_back(std::move(g));
      if (std::find(task_order.begin(), task_order.end(), groups.back().task) == task_order.end()) {
        task_order.push_back(groups.back().task);
      }
    }
    Group& g = groups[it->second];
    const OptimizerInfo* o = FindOptimizer(g.optimizer);
    if (o != nullptr && o->uses_bits) {
      if (std::none_of(g.cells.begin(), g.cells.end(), [&](const RunParams& c) { return c == carried; })) {
        g.cells.push_back(carried);
      }
      continue;
    }
    if (std::isnan(lr)) continue;
    double value = worst;
    if (r.state == RunState::kSucceeded) {
      auto f = r.final.find(metric);
      if (f != r.final.end() && std::isfinite(f->second)) value = f->second;
    }
    g.values_by_lr[lr].push_back(value);
  }

  auto optimizer_rank = [](const std::string& name) {
    const auto& known = KnownOptimizers();
    for (size_t i = 0; i < known.size(); ++i) {
      if (known[i].name == name) return static_cast<int>(i);
    }
    return static_cast<int>(known.size());
  };
  std::vector<const Group*> ordered;
  for (const Group& g : groups) ordered.push_back(&g);
  std::stable_sort(ordered.begin(), ordered.end(), [&](const Group* a, const Group* b) {
    auto ta = std::find(task_order.begin(), task_order.end(), a->task) - task_order.begin();
    auto tb = std::find(task_order.begin(), task_order.end(), b->task) - task_order.begin();
    if (ta != tb) return ta < tb;
    return optimizer_rank(a->optimizer) < optimizer_rank(b->optimizer);
  });

  std::vector<Cell> cells;
  std::set<std::string> tasks_with_baseline, tasks_with_madam;
  std::map<std::string, const Group*> first_baseline_of_task;
  for (const Group* g : ordered) {
    const OptimizerInfo* o = FindOptimizer(g->optimizer);
    if (o == nullptr) continue;
    if (o->baseline) {
      if (g->values_by_lr.empty()) continue;
      double best_lr = 0, best_mean = 0;
      bool have = false;
      for (const auto& [lr, values] : g->values_by_lr) {  // ascending lr: ties keep the smaller
        double sum = 0;
        for (double v : values) sum += v;
        const double mean = sum / static_cast<double>(values.size());
        if (!have || (minimize ? mean < best_mean : mean > best_mean)) {
          best_lr = lr;
          best_mean = mean;
          have = true;
        }
      }
      Cell c;
      c.params = g->params;
      c.params["lr"] = ParamValue::Number(best_lr);
      const size_t seeds = g->values_by_lr.at(best_lr).size();
      if (std::isfinite(best_mean)) {
        c.reason = "best mean " + metric + " " + ShortNumber(best_mean) + " over " + SeedsText(seeds) +
                   " of " + LrRange(g->values_by_lr) + " in " + parent.id;
      } else {
        c.reason = "no lr of " + LrRange(g->values_by_lr) + " in " + parent.id + " ended with a finite " +
                   metric + " (every one diverged or failed); the smallest is kept";
      }
      cells.push_back(std::move(c));
      tasks_with_baseline.insert(g->task);
      first_baseline_of_task.emplace(g->task, g);
    } else if (o->multiplicative && !o->uses_bits) {
      Cell c;
      c.params = g->params;
      c.params["lr"] = ParamValue::Number(kPromotedMadamLr);
      c.reason = "fixed at the paper's 0.01, never tuned";
      if (!g->values_by_lr.empty()) c.reason += " (" + LrRange(g->values_by_lr) + " ran in " + parent.id + ")";
      cells.push_back(std::move(c));
      tasks_with_madam.insert(g->task);
    } else if (o->uses_bits) {
      for (const RunParams& p : g->cells) {
        Cell c;
        c.params = p;
        c.reason = "carried over from " + parent.id + " as it was";
        cells.push_back(std::move(c));
      }
    }
  }
  if (tasks_with_baseline.empty()) {
    return Status::FailedPrecondition(
        "sweep " + parent.id + " has no sgd or adam runs with an lr: promote tunes the baselines' lr "
        "from them (an optimizer axis with sgd/adam beside the lr axis)");
  }
  // A task whose grid ran no Madam still gets Madam at 0.01: Table 1
  // compares against it. Its cell is a baseline cell's with the optimiser's
  // own parameters left out.
  for (const auto& [task, g] : first_baseline_of_task) {
    if (tasks_with_madam.count(task)) continue;
    Cell c;
    const OptimizerInfo* madam = FindOptimizer("madam");
    const TaskInfo* info = FindTask(task);
    for (const auto& [k, v] : g->params) {
      const RunParamInfo* p = FindRunParam(k);
      if (p != nullptr && madam != nullptr && info != nullptr && !ParamApplies(*p, *info, *madam)) continue;
      c.params[k] = v;
    }
    c.params["optimizer"] = ParamValue::String("madam");
    c.params["lr"] = ParamValue::Number(kPromotedMadamLr);
    c.reason = "fixed at the paper's 0.01, never tuned (" + parent.id + " ran no madam on this task)";
    // Right after the task's last cell.
    size_t at = cells.size();
    for (size_t i = 0; i < cells.size(); ++i) {
      if (Text(cells[i].params, "task") == task) at = i + 1;
    }
    cells.insert(cells.begin() + static_cast<std::ptrdiff_t>(at), std::move(c));
  }

  if (options.epochs > 0) {
    for (Cell& c : cells) c.params["epochs"] = ParamValue::Number(static_cast<double>(options.epochs));
  }

  // Parameters equal in every cell go under params: (task at the top);
  // the rest are the entries of one axis of maps.
  RunParams common = cells.front().params;
  for (const Cell& c : cells) {
    for (auto it = common.begin(); it != common.end();) {
      auto found = c.params.find(it->first);
      it = found == c.params.end() || found->second != it->second ? common.erase(it) : std::next(it);
    }
  }

  Promotion out;
  {
    std::set<int64_t> parent_seeds;
    for (const RunRow& run : runs) {
      auto seed = run.params.find("seed");
      if (seed != run.params.end() && seed->second.is_number()) {
        parent_seeds.insert(static_cast<int64_t>(seed->second.number));
      }
    }
    std::string shared;
    for (int64_t seed : options.seeds) {
      if (parent_seeds.count(seed)) shared += (shared.empty() ? "" : ",") + std::to_string(seed);
    }
    if (!shared.empty()) {
      out.warnings.push_back("seeds " + shared + " were run by " + parent.id +
                             " already: Table 1 will repeat those runs instead of testing the chosen "
                             "lrs on fresh seeds; pass --seeds with others (e.g. 3,4,5)");
    }
  }
  out.name = options.name.empty() ? DefaultPromotedName(parent.name) : options.name;
  std::ostringstream y;
  y << "# Table 1 (stage 2), promoted from Figure 1 sweep " << parent.id << " (" << parent.name
    << ") by `madamctl sweep promote`:\n"
    << "# each baseline at its best lr, madam at 0.01 untuned, fresh seeds, the recipe's schedule.\n";
  for (Cell& c : cells) {
    std::string what = Text(c.params, "optimizer");
    for (const std::string& k : OrderedKeys(c.params)) {
      if (k == "optimizer" || k == "lr" || common.count(k)) continue;
      what += (k == "task" ? " on " + Text(c.params, "task") : " " + k + "=" + Text(c.params, k.c_str()));
    }
    if (common.count("task") && spec->task.empty()) what += " on " + Text(c.params, "task");
    double lr = c.params.count("lr") ? c.params.at("lr").number : 0;
    c.reason = what + " lr " + ShortNumber(lr) + ": " + c.reason;
    out.reasons.push_back(c.reason);
    y << "#   " << c.reason << "\n";
  }
  y << "name: " << YamlString(out.name) << "\n";
  y << "description: " << YamlString("Table 1 promoted from " + parent.id + " (" + parent.name + ")") << "\n";
  y << "table: 1\n";
  if (!spec->use_recipe) y << "recipe: none\n";
  if (auto t = common.find("task"); t != common.end()) y << "task: " << YamlValue(t->second) << "\n";
  y << "metric: {name: " << YamlString(metric) << ", goal: " << (minimize ? "minimize" : "maximize") << "}\n";
  bool any_param = false;
  for (const auto& [k, v] : common) {
    if (k == "task") continue;
    if (!any_param) y << "params:\n";
    any_param = true;
    y << "  " << k << ": " << YamlValue(v) << "\n";
  }
  y << "grid:\n  cell:\n";
  for (const Cell& c : cells) {
    std::string entry;
    for (const std::string& k : OrderedKeys(c.params)) {
      if (common.count(k)) continue;
      entry += (entry.empty() ? "" : ", ") + k + ": " + YamlValue(c.params.at(k));
    }
    y << "    - {" << entry << "}";
    if (auto lr = c.params.find("lr"); lr != c.params.end() && lr->second.is_number() &&
                                       ShortNumber(lr->second.number) != lr->second.ToString()) {
      y << "   # lr " << ShortNumber(lr->second.number);
    }
    y << "\n";
  }
  y << "seeds: [";
  for (size_t i = 0; i < options.seeds.size(); ++i) y << (i ? ", " : "") << options.seeds[i];
  y << "]\n";
  if (spec->max_concurrent > 0) y << "max_concurrent: " << spec->max_concurrent << "\n";
  y << "max_attempts: " << spec->max_attempts << "\n";
  y << "resources: {device: " << spec->device << "}\n";
  out.spec_text = y.str();
  return out;
}

}  // namespace madam::server
