#include "common/recipe.h"

#include <algorithm>

#include "common/recipes/recipes.h"

namespace madam {

const std::vector<RecipeValue>& PaperDefaults() {
  static const std::vector<RecipeValue> defaults = recipes::Defaults();
  return defaults;
}

const std::vector<TaskRecipe>& AllRecipes() {
  static const std::vector<TaskRecipe> all = [] {
    std::vector<TaskRecipe> out;
    for (auto part : {recipes::CifarRecipes(), recipes::ImageNetRecipes(), recipes::WikiTextRecipes(),
                      recipes::FashionMnistRecipes(), recipes::CganRecipes()}) {
      for (auto& r : part) out.push_back(std::move(r));
    }
    return out;
  }();
  return all;
}

const TaskRecipe* FindRecipe(std::string_view task) {
  for (const auto& r : AllRecipes()) {
    if (r.task == task) return &r;
  }
  return nullptr;
}

namespace {

constexpr std::string_view kFixedEta = "figure 1: fixed eta, no decay, no warm-up";

std::string SourceOf(const RecipeValue& v) {
  return (v.provenance == Provenance::kConfirmed ? "confirmed: " : "assumed: ") + v.reference;
}

bool RuleApplies(const RecipeRule& rule, std::string_view optimizer) {
  return rule.optimizers.empty() ||
         std::find(rule.optimizers.begin(), rule.optimizers.end(), optimizer) !=
             rule.optimizers.end();
}

// Whether lr_schedule `schedule` reads schedule parameter `param`.
bool ScheduleUses(std::string_view schedule, std::string_view param) {
  if (param == "lr_schedule" || param == "warmup_epochs") return true;
  if (param == "lr_milestones") return schedule == "step";
  if (param == "lr_decay_patience" || param == "lr_min") return schedule == "plateau";
  if (param == "lr_decay_factor" || param == "lr_factor_decay") return schedule != "constant";
  return true;
}

std::string ScheduleOwner(std::string_view param) {
  if (param == "lr_milestones") return "lr_schedule step";
  if (param == "lr_decay_patience" || param == "lr_min") return "lr_schedule plateau";
  return "lr_schedule step or plateau";
}

// The defaults and the recipe applied for one (task, optimiser, recipe on or
// off), computed once: resolving a grid cell then only copies it and
// applies the cell's own parameters.
struct Base {
  RunConfig config;
  std::map<std::string, std::string> sources;
  const TaskRecipe* recipe = nullptr;
};

Base MakeBase(const TaskInfo& task, const OptimizerInfo& optimizer, bool use_recipe) {
  Base base;
  base.config.task = std::string(task.name);
  base.config.optimizer = std::string(optimizer.name);
  for (const auto& d : PaperDefaults()) {
    Status s = ApplyRunParam(d.param, d.value, base.config);
    if (!s.ok()) DieOnBadResultAccess(Status::Internal("paper default " + d.param + ": " + s.message()));
    base.sources[d.param] = SourceOf(d);
  }
  base.recipe = use_recipe ? FindRecipe(task.name) : nullptr;
  if (base.recipe != nullptr) {
    for (const auto& rule : base.recipe->rules) {
      if (!RuleApplies(rule, optimizer.name)) continue;
      for (const auto& v : rule.values) {
        Status s = ApplyRunParam(v.param, v.value, base.config);
        if (!s.ok()) {
          DieOnBadResultAccess(Status::Internal(std::string(task.name) + " recipe: " + s.message()));
        }
        base.sources[v.param] = SourceOf(v);
      }
    }
  }
  base.config.recipe = use_recipe ? "paper" : "none";
  base.sources["task"] = base.sources["optimizer"] = "set";
  return base;
}

const Base& BaseFor(const TaskInfo& task, const OptimizerInfo& optimizer, bool use_recipe) {
  static const std::vector<Base> bases = [] {
    std::vector<Base> out;
    for (const auto& t : KnownTasks()) {
      for (const auto& o : KnownOptimizers()) {
        for (bool r : {false, true}) out.push_back(MakeBase(t, o, r));
      }
    }
    return out;
  }();
  const auto& tasks = KnownTasks();
  const auto& optimizers = KnownOptimizers();
  const size_t t = static_cast<size_t>(&task - tasks.data());
  const size_t o = static_cast<size_t>(&optimizer - optimizers.data());
  return bases[(t * optimizers.size() + o) * 2 + (use_recipe ? 1 : 0)];
}

// The task and optimiser of `given`, checked the way RunConfigFromParams
// checks them so the messages agree.
Status ReadIdentity(const RunParams& given, const TaskInfo** task,
                    const OptimizerInfo** optimizer, std::string* bad) {
  RunConfig identity;
  for (const char* key : {"task", "optimizer"}) {
    auto it = given.find(key);
    *bad = key;
    if (it == given.end()) return Status::InvalidArgument(std::string("run parameter ") + key + " is required");
    MADAM_RETURN_IF_ERROR(ApplyRunParam(key, it->second, identity));
  }
  *task = FindTask(identity.task);
  *optimizer = FindOptimizer(identity.optimizer);
  return Status::Ok();
}

// Resolves into a RunConfig. `overrides` receives the source of every
// parameter that did not keep its base value's source.
Result<RunConfig> Resolve(const RunParams& given, const ResolveOptions& options, std::string& bad,
                          std::map<std::string, std::string>* overrides,
                          const Base** base_out) {
  auto fail = [&](const std::string& param, const std::string& message) {
    bad = param;
    return Status::InvalidArgument(message);
  };
  const TaskInfo* task = nullptr;
  const OptimizerInfo* optimizer = nullptr;
  MADAM_RETURN_IF_ERROR(ReadIdentity(given, &task, &optimizer, &bad));
  auto recipe_it = given.find("recipe");
  const bool use_recipe = recipe_it == given.end() || recipe_it->second != ParamValue::String("none");
  const Base& base = BaseFor(*task, *optimizer, use_recipe);
  *base_out = &base;
  RunConfig config = base.config;
  auto note = [&](const std::string& name, std::string source) {
    if (overrides) (*overrides)[name] = std::move(source);
  };

  for (const auto& [name, value] : given) {
    const RunParamInfo* info = FindRunParam(name);
    if (info == nullptr) {
      RunConfig scratch;
      return fail(name, ApplyRunParam(name, value, scratch).message());
    }
    if (!ParamApplies(*info, *task, *optimizer)) {
      if (options.drop_inapplicable) continue;
      const bool task_lacks =
          info->feature != 0 && !task->has(static_cast<TaskFeature>(info->feature));
      return fail(name, "parameter " + name + " does not apply to " +
                            (task_lacks ? "task " + std::string(task->name)
                                        : "optimizer " + std::string(optimizer->name)));
    }
    if (options.schedule == ScheduleRule::kFixed && info->schedule) {
      return fail(name, "parameter " + name + " cannot be set in a Figure 1 sweep: figure 1 "
                        "runs a fixed eta without decay or warm-up (the paper's Figure 1 "
                        "caption); a Table 1 or 2 sweep (table: 1, table: 2, or madamctl sweep "
                        "promote) runs the recipe's schedule");
    }
    Status s = ApplyRunParam(name, value, config);
    if (!s.ok()) return fail(name, s.message());
    note(name, "set");
  }
  auto given_here = [&](const std::string& name) {
    auto it = given.find(name);
    return it != given.end() && ParamApplies(*FindRunParam(name), *task, *optimizer);
  };
  // Figure 1's fixed eta; then any schedule parameter the final schedule does
  // not read: an error when the run set it, quietly back to its default when
  // the recipe did (the run chose another schedule).
  for (const auto& d : PaperDefaults()) {
    const RunParamInfo* info = FindRunParam(d.param);
    if (!info->schedule) continue;
    if (options.schedule == ScheduleRule::kFixed) {
      (void)ApplyRunParam(d.param, d.value, config);
      note(d.param, std::string(kFixedEta));
    }
  }
  if (options.schedule == ScheduleRule::kFixed) {
    config.lr_schedule = "constant";
    note("lr_schedule", std::string(kFixedEta));
  }
  for (const auto& d : PaperDefaults()) {
    const RunParamInfo* info = FindRunParam(d.param);
    if (!info->schedule || ScheduleUses(config.lr_schedule, d.param)) continue;
    if (given_here(d.param)) {
      return fail(d.param, "parameter " + d.param + " is set but lr_schedule is " +
                               config.lr_schedule + " (" + d.param + " belongs to " +
                               ScheduleOwner(d.param) + ")");
    }
    (void)ApplyRunParam(d.param, d.value, config);
    if (options.schedule != ScheduleRule::kFixed) {
      note(d.param, "default: not read by lr_schedule " + config.lr_schedule);
    }
  }
  std::string config_bad;
  Status checked = CheckRunConfig(config, &config_bad);
  if (!checked.ok()) {
    std::string message = checked.message();
    if (!config_bad.empty() && !given_here(config_bad) && base.recipe != nullptr &&
        base.sources.count(config_bad) && base.sources.at(config_bad).rfind("confirmed", 0) == 0) {
      message += " (" + config_bad + " comes from the " + std::string(task->name) +
                 " recipe: set it too to change it)";
    }
    bad = config_bad;
    return Status(checked.code(), message);
  }
  return config;
}

}  // namespace

Result<RunConfig> ResolveConfig(const RunParams& given, const ResolveOptions& options,
                                std::string* bad_param) {
  std::string ignored;
  const Base* base = nullptr;
  return Resolve(given, options, bad_param ? *bad_param : ignored, nullptr, &base);
}

Result<ResolvedRun> ResolveRun(const RunParams& given, const ResolveOptions& options,
                               std::string* bad_param) {
  std::string ignored;
  std::map<std::string, std::string> overrides;
  const Base* base = nullptr;
  auto config = Resolve(given, options, bad_param ? *bad_param : ignored, &overrides, &base);
  if (!config.ok()) return config.status();
  ResolvedRun out;
  out.config = std::move(*config);
  out.params = RunConfigToParams(out.config);
  for (const auto& [name, value] : out.params) {
    (void)value;
    if (auto it = overrides.find(name); it != overrides.end()) {
      out.sources[name] = it->second;
    } else if (auto b = base->sources.find(name); b != base->sources.end()) {
      out.sources[name] = b->second;
    } else {
      out.sources[name] = "set";
    }
  }
  return out;
}

RunParams ResolvedRunParams(const RunParams& stored) {
  ResolveOptions options;
  options.drop_inapplicable = true;
  auto resolved = ResolveRun(stored, options);
  if (!resolved.ok()) return stored;
  return std::move(resolved->params);
}

}  // namespace madam
