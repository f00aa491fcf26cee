// fmnist-mlp and fmnist-cnn: Fashion-MNIST from its idx .gz files (Debian's
// dataset-fashion-mnist by default), a 784-256-256-10 MLP or a small CNN.
// Not paper tasks: their recipe is assumed (common/recipes/fashion_mnist.cc).
#include "worker/tasks/classifier.h"
#include "worker/tasks/factories.h"

namespace madam::worker {
namespace {

const char* const kDefaultDir = "/usr/share/datasets/fashion-mnist";

class FashionMnistTask final : public ClassifierTask {
 public:
  explicit FashionMnistTask(bool cnn) : cnn_(cnn) {}

 protected:
  std::shared_ptr<const ClassificationData> LoadData(const RunConfig&,
                                                     const TaskContext& context) override {
    const std::string dir = context.data_dir.empty() ? kDefaultDir : context.data_dir;
    const torch::Device device = context.device;
    return context.cache->GetOrLoad<ClassificationData>(
        "fmnist|" + dir + "|" + device.str(), [&] {
          auto r = LoadFashionMnist(dir);
          if (!r.ok()) throw RunError(r.status().message());
          ClassificationData d = std::move(*r);
          d.train_x = d.train_x.to(device);
          d.train_y = d.train_y.to(device);
          d.test_x = d.test_x.to(device);
          d.test_y = d.test_y.to(device);
          return d;
        });
  }
  std::shared_ptr<TaskModel> MakeModel(const RunConfig&) override {
    return cnn_ ? MakeSmallCnn(10) : MakeMlp(784, 256, 10);
  }

 private:
  const bool cnn_;
};

}  // namespace

std::unique_ptr<Task> MakeFashionMnistMlpTask() { return std::make_unique<FashionMnistTask>(false); }
std::unique_ptr<Task> MakeFashionMnistCnnTask() { return std::make_unique<FashionMnistTask>(true); }

}  // namespace madam::worker
