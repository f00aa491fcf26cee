// wikitext2-transformer: wiki.{train,valid,test}.tokens in --data-dir and a
// causal Transformer language model, trained as the authors'
// pytorch/transformer-wikitext2 does (PyTorch's word_language_model with
// --model Transformer; recipe: common/recipes/wikitext2.cc): each split is
// one token stream cut into batch_size (eval_batch_size for valid and test)
// columns, read in order bptt tokens at a time. Validation is the valid
// file, so val/perplexity exists every epoch.
#include <cmath>

#include "worker/optimizers.h"
#include "worker/tasks/datasets.h"
#include "worker/tasks/factories.h"
#include "worker/tasks/models.h"

namespace madam::worker {
namespace {

// [tokens] -> [rows, width], dropping the remainder (as the
// word_language_model example does).
torch::Tensor Batchify(const torch::Tensor& stream, int64_t width, const char* split) {
  const int64_t rows = stream.size(0) / width;
  if (rows < 2) {
    throw RunError(std::string("the ") + split + " split (" + std::to_string(stream.size(0)) +
                   " tokens) is too small for batch width " + std::to_string(width));
  }
  return stream.narrow(0, 0, rows * width).view({width, rows}).t().contiguous();
}

class WikiTextTransformerTask final : public Task {
 public:
  // `default_dir`: where the corpus is when --data-dir is not given (empty:
  // --data-dir is required).
  WikiTextTransformerTask(std::string name, std::string default_dir)
      : name_(std::move(name)), default_dir_(std::move(default_dir)) {}

  void Prepare(const RunConfig& config, const TaskContext& context) override {
    config_ = config;
    device_ = context.device;
    const std::string dir = context.data_dir.empty() ? default_dir_ : context.data_dir;
    if (dir.empty()) {
      throw RunError(name_ + " needs --data-dir: a directory with wiki.train.tokens, "
                     "wiki.valid.tokens and wiki.test.tokens");
    }
    corpus_ = context.cache->GetOrLoad<LanguageData>("wikitext|" + dir, [&] {
      auto r = LoadWikiText(dir);
      if (!r.ok()) throw RunError(r.status().message());
      return std::move(*r);
    });
    // Batchified per run: the train width is the run's batch size.
    train_ = Batchify(corpus_->train, config.batch_size, "train").to(device_);
    valid_ = Batchify(corpus_->valid, config.eval_batch_size, "valid").to(device_);
    test_ = Batchify(corpus_->test, config.eval_batch_size, "test").to(device_);
  }

  std::vector<Network> BuildNetworks() override {
    model_ = MakeTransformerLm(static_cast<int64_t>(corpus_->vocab.size()), config_.emsize,
                               config_.nhead, config_.nhid, config_.nlayers, config_.dropout);
    model_->to(device_);
    return {{"model", model_}};
  }

  int64_t StepsPerEpoch() const override {
    return (train_.size(0) - 1 + config_.bptt - 1) / config_.bptt;
  }

  int64_t SamplesInStep(int64_t batch) const override {
    return Length(train_, batch * config_.bptt) * train_.size(1);
  }

  void BeginEpoch(int64_t, uint64_t) override {}  // read in order; dropout is seeded by the loop

  StepLosses TrainStep(int64_t batch, const std::vector<RunOptimizer*>& optimizers) override {
    RunOptimizer& optimizer = *optimizers.front();
    const int64_t i = batch * config_.bptt;
    const int64_t len = Length(train_, i);
    auto x = train_.narrow(0, i, len);
    auto y = train_.narrow(0, i + 1, len).reshape({-1});
    optimizer.ClearGrads();
    auto out = model_->forward(x);
    auto loss = torch::cross_entropy_loss(out.reshape({-1, out.size(2)}), y);
    loss.backward();
    optimizer.Step();
    return {{"train/loss", loss.detach()}};
  }

  std::map<std::string, double> Evaluate(Split split) override {
    torch::NoGradGuard no_grad;
    model_->eval();
    const torch::Tensor& source = split == Split::kValidation ? valid_ : test_;
    double total = 0;
    int64_t tokens = 0;
    for (int64_t i = 0; i < source.size(0) - 1; i += config_.bptt) {
      const int64_t len = Length(source, i);
      auto out = model_->forward(source.narrow(0, i, len));
      auto y = source.narrow(0, i + 1, len).reshape({-1});
      total += torch::cross_entropy_loss(out.reshape({-1, out.size(2)}), y, {}, at::Reduction::Sum)
                   .item<double>();
      tokens += y.numel();
    }
    model_->train();
    const double loss = total / static_cast<double>(tokens);
    return {{"loss", loss}, {"perplexity", std::exp(loss)}};
  }

  bool HasValidation() const override { return true; }

 private:
  int64_t Length(const torch::Tensor& source, int64_t i) const {
    return std::min(config_.bptt, source.size(0) - 1 - i);
  }

  const std::string name_;
  const std::string default_dir_;
  RunConfig config_;
  torch::Device device_{torch::kCPU};
  std::shared_ptr<const LanguageData> corpus_;
  torch::Tensor train_, valid_, test_;  // batchified, on the run's device
  std::shared_ptr<TaskModel> model_;
};

}  // namespace

std::unique_ptr<Task> MakeWikiTextTransformerTask() {
  return std::make_unique<WikiTextTransformerTask>("wikitext2-transformer", "");
}

// The CPU-scale language model: the same model code on the King James Bible
// that deploy/install-deps.sh converts (tools/make_kjv_corpus.py).
std::unique_ptr<Task> MakeKjvTransformerTask() {
  return std::make_unique<WikiTextTransformerTask>("kjv-transformer", kKjvCorpusDir);
}

}  // namespace madam::worker
