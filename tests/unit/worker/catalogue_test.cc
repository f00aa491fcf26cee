// Every task and optimiser of the catalogue (common/catalogue.h) has an
// implementation in the worker, and the worker implements nothing the
// catalogue does not list.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "common/catalogue.h"
#include "worker/optimizers.h"
#include "worker/tasks/task.h"

namespace madam::worker {
namespace {

TEST(CatalogueTest, EveryTaskNameHasAnImplementationAndNoOther) {
  std::set<std::string_view> catalogue, implemented;
  for (const auto& t : KnownTasks()) {
    catalogue.insert(t.name);
    EXPECT_NE(MakeTask(t.name), nullptr) << t.name;
  }
  for (auto name : ImplementedTasks()) implemented.insert(name);
  EXPECT_EQ(catalogue, implemented);
  EXPECT_EQ(MakeTask("no-such-task"), nullptr);
}

TEST(CatalogueTest, EveryOptimizerNameHasAnImplementationAndNoOther) {
  std::set<std::string_view> catalogue, implemented;
  for (const auto& o : KnownOptimizers()) catalogue.insert(o.name);
  for (auto name : ImplementedOptimizers()) implemented.insert(name);
  EXPECT_EQ(catalogue, implemented);
  RunConfig c;
  c.task = "synthetic-mlp";
  for (const auto& o : KnownOptimizers()) {
    c.optimizer = std::string(o.name);
    auto p = torch::randn({4, 3}, torch::requires_grad());
    auto optimizer = MakeOptimizer(c, {p});
    ASSERT_NE(optimizer, nullptr) << o.name;
    EXPECT_EQ(optimizer->params().size(), 1u);
  }
  c.optimizer = "rmsprop";
  EXPECT_THROW(MakeOptimizer(c, {torch::randn({2}, torch::requires_grad())}), RunError);
}

TEST(CatalogueTest, PaperTasksCarryTheirTableOrder) {
  std::vector<int> orders;
  for (const auto& t : KnownTasks()) {
    if (t.paper_order > 0) orders.push_back(t.paper_order);
    EXPECT_FALSE(t.metric.empty());
    EXPECT_FALSE(t.validation_metric.empty());
    EXPECT_TRUE(GoalOfMetric(t.metric).has_value()) << t.metric;
  }
  EXPECT_TRUE(std::is_sorted(orders.begin(), orders.end()));
  EXPECT_EQ(FindOptimizer("int_madam")->uses_bits, true);
  EXPECT_EQ(FindOptimizer("madam")->multiplicative, true);
  EXPECT_EQ(FindOptimizer("sgd")->baseline, true);
}

}  // namespace
}  // namespace madam::worker
