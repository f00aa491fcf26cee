// Fashion-MNIST and the synthetic task: not in the paper, so every value is
// assumed; chosen so that a CPU can sweep them (ARCHITECTURE.md section 6).
#include "common/recipes/recipes.h"

namespace madam::recipes {
namespace {

std::vector<RecipeRule> FashionRules() {
  const std::string why = "not a paper task: a CPU-scale choice";
  return {
      {{},
       {
           Assumed("epochs", Num(5), why),
           Assumed("batch_size", Num(128), why),
           Assumed("val_split", Num(5000),
                   "ARCHITECTURE.md section 6: Fashion-MNIST holds out 5,000 for validation"),
           Assumed("lr_schedule", Str("plateau"), why + "; it watches val/error, never the test set"),
           Assumed("lr_decay_patience", Num(2), why),
       }},
      {{"sgd", "adam", "madam"}, {Assumed("lr_decay_factor", Num(10), why)}},
      {{"sgd"}, {Assumed("momentum", Num(0.9), "SGD with momentum, as the paper's image tasks")}},
      {{"int_madam"}, {Assumed("lr_factor_decay", Num(4), "as the paper's CIFAR B-bit runs")}},
  };
}

}  // namespace

std::vector<TaskRecipe> FashionMnistRecipes() {
  return {
      {"fmnist-mlp", "not a paper task: assumed CPU-scale settings", FashionRules()},
      {"fmnist-cnn", "not a paper task: assumed CPU-scale settings", FashionRules()},
      {"synthetic-mlp",
       "generated data for tests and benchmarks",
       {{{},
         {
             Assumed("epochs", Num(3), "tests and benchmarks: seconds per run"),
             Assumed("batch_size", Num(128), "tests and benchmarks"),
         }},
        {{"sgd"}, {Assumed("momentum", Num(0.9), "tests and benchmarks")}}}},
  };
}

}  // namespace madam::recipes
