// The recipe tables, one file per task family (private to common/recipe.cc).
// Each value is confirmed (with the authors' file, jxbz/madam commit
// c2d2359, or the paper) or assumed (with why); PAPER_RECIPES.md holds the
// same facts for readers.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "common/recipe.h"

namespace madam::recipes {

inline RecipeValue Confirmed(std::string param, ParamValue value, std::string reference) {
  return {std::move(param), std::move(value), Provenance::kConfirmed, std::move(reference)};
}
inline RecipeValue Assumed(std::string param, ParamValue value, std::string why) {
  return {std::move(param), std::move(value), Provenance::kAssumed, std::move(why)};
}
inline ParamValue Num(double v) { return ParamValue::Number(v); }
inline ParamValue Str(std::string v) { return ParamValue::String(std::move(v)); }
inline ParamValue List(std::initializer_list<double> v) { return ParamValue::List(v); }

std::vector<RecipeValue> Defaults();
std::vector<TaskRecipe> CifarRecipes();
std::vector<TaskRecipe> ImageNetRecipes();
std::vector<TaskRecipe> WikiTextRecipes();
std::vector<TaskRecipe> FashionMnistRecipes();
std::vector<TaskRecipe> CganRecipes();

}  // namespace madam::recipes
