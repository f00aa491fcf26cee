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
  return {std::move(lm)};
}

}  // namespace madam::recipes
