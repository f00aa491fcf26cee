// WikiText-2 Transformer: pytorch/transformer-wikitext2/ of the authors'
// code (PyTorch's word_language_model example with --model Transformer),
// main.py's defaults and the command lines of batch.sh.
#include "common/recipes/recipes.h"

namespace madam::recipes {

std::vector<TaskRecipe> WikiTextRecipes() {
  const std::string main = "pytorch/transformer-wikitext2/main.py";
  const std::string batch = "pytorch/transformer-wikitext2/batch.sh";
  const std::string model = "pytorch/transformer-wikitext2/model.py";
  TaskRecipe lm{
      "wikitext2-transformer",
      "jxbz/madam pytorch/transformer-wikitext2: 2-layer Transformer, 20 epochs, /10 at epoch 10, "
      "test perplexity of the best-validation model",
      {
          {{},
           {
               Confirmed("epochs", Num(20), batch + " (--epochs 20)"),
               Confirmed("batch_size", Num(20), main + " (--batch_size 20)"),
               Confirmed("eval_batch_size", Num(10), main + " (eval_batch_size = 10)"),
               Confirmed("bptt", Num(35), main + " (--bptt 35)"),
               Confirmed("emsize", Num(200), main + " (--emsize 200)"),
               Confirmed("nhid", Num(200), main + " (--nhid 200)"),
               Confirmed("nlayers", Num(2), main + " (--nlayers 2)"),
               Confirmed("nhead", Num(2), main + " (--nhead 2)"),
               Confirmed("dropout", Num(0.2), main + " (--dropout 0.2)"),
               Confirmed("lr_schedule", Str("step"), main + " (if epoch == 10: decay)"),
               Confirmed("lr_milestones", List({10}), main + " (if epoch == 10: decay)"),
               Confirmed("model_selection", Str("best_val"),
                         main + " (saves the best validation loss model, tests it at the end)"),
               Confirmed("bias_init", Str("keep"), model + " (zero biases stay zero)"),
           }},
          {{"sgd", "adam", "madam"},
           {Confirmed("lr_decay_factor", Num(10), main + " (--decayfactor 10)")}},
          {{"sgd"},
           {
               Confirmed("lr", Num(1.0), batch + " (seeds of the best SGD: --lr 1)"),
               Confirmed("momentum", Num(0), main + " (torch.optim.SGD(params, lr))"),
               Confirmed("grad_clip", Num(0.25), main + " (--clip 0.25, SGD only)"),
           }},
          {{"adam"}, {Confirmed("lr", Num(0.0001), batch + " (seeds of the best Adam: --lr 0.0001)")}},
          {{"madam"},
           {
               Confirmed("lr", Num(0.01), batch),
               Confirmed("p_scale", Num(2), batch + " (--scale 2.0)"),
           }},
          {{"int_madam"},
           {
               Confirmed("lr", Num(0.01), batch + " (--lr 0.01)"),
               Confirmed("base_lr", Num(0.001), batch + " (12-bit: --baselr 0.001)"),
               Confirmed("bits", Num(12), batch + " (--levels 4096)"),
               Confirmed("lr_factor_decay", Num(2), batch + " (12-bit: --decayfactor 2)"),
               Confirmed("p_scale", Num(2), batch + " (--scale 2.0)"),
           }},
      }};
  // The CPU-scale stand-in: WikiText-2's optimiser settings (SGD without
  // momentum, clipped; Madam p_scale 2; the best-validation model), on a
  // corpus and a model small enough for these CPUs to sweep.
  const std::string cpu = "a CPU-scale size: an epoch of the 207k-token train split takes ~16 s "
                          "on one core";
  const std::string same = "as WikiText-2 (" + batch + ")";
  TaskRecipe kjv{
      "kjv-transformer",
      "not a paper task: WikiText-2's recipe on the King James Bible at CPU scale (all assumed)",
      {
          {{},
           {
               Assumed("epochs", Num(6), cpu),
               Assumed("batch_size", Num(20), same),
               Assumed("eval_batch_size", Num(10), same),
               Assumed("bptt", Num(35), same),
               Assumed("emsize", Num(64), cpu),
               Assumed("nhid", Num(128), cpu),
               Assumed("nlayers", Num(2), same),
               Assumed("nhead", Num(2), same),
               Assumed("dropout", Num(0.2), same),
               Assumed("lr_schedule", Str("step"), same),
               Assumed("lr_milestones", List({4}), "WikiText-2 decays at 10 of 20 epochs; here at 4 of 6"),
               Assumed("model_selection", Str("best_val"), same),
               Assumed("bias_init", Str("keep"), same),
           }},
          {{"sgd", "adam", "madam"}, {Assumed("lr_decay_factor", Num(10), same)}},
          {{"sgd"},
           {
               Assumed("lr", Num(1.0), same),
               Assumed("momentum", Num(0), same),
               Assumed("grad_clip", Num(0.25), same),
           }},
          {{"adam"}, {Assumed("lr", Num(0.0001), same)}},
          {{"madam"}, {Assumed("lr", Num(0.01), same), Assumed("p_scale", Num(2), same)}},
          {{"int_madam"},
           {
               Assumed("lr", Num(0.01), same),
               Assumed("base_lr", Num(0.001), same),
               Assumed("bits", Num(12), same),
               Assumed("lr_factor_decay", Num(2), same),
               Assumed("p_scale", Num(2), same),
           }},
      }};
  return {std::move(lm), std::move(kjv)};
}

}  // namespace madam::recipes
