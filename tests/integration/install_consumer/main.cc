// Trains y = 2x + 1 for a few steps with each installed optimiser and checks
// that the loss falls: proof that find_package(madam) gives a working library.
#include <madam/optim/integer_madam.h>
#include <madam/optim/madam.h>
#include <torch/torch.h>

#include <cstdio>

template <typename Opt, typename Options>
bool LossFalls(const char* name, Options options) {
  torch::manual_seed(0);
  torch::nn::Linear model(1, 1);
  // Multiplicative updates need a non-zero bias, and |w| is capped at
  // p_scale * |initial w|: start where the target (2, 1) is reachable.
  model->weight.data().fill_(1.0);
  model->bias.data().fill_(0.5);
  Opt opt(model->parameters(), options);
  auto x = torch::linspace(-1, 1, 64).unsqueeze(1);
  auto y = 2 * x + 1;
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    auto loss = torch::mse_loss(model->forward(x), y);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  std::printf("%s: loss %.4f -> %.4f\n", name, first, last);
  return last < 0.5 * first;
}

int main() {
  bool ok = LossFalls<madam::optim::Madam>("Madam", madam::optim::MadamOptions(0.05));
  ok = LossFalls<madam::optim::IntegerMadam>(
           "IntegerMadam", madam::optim::IntegerMadamOptions(0.001).lr_factor(50)) && ok;
  return ok ? 0 : 1;
}
