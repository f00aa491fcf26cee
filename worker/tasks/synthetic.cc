// synthetic-mlp: generated data (worker/tasks/datasets.h: MakeSyntheticData)
// and a 20-64-64-4 MLP, for tests and benchmarks: a run takes seconds.
#include "worker/tasks/classifier.h"
#include "worker/tasks/factories.h"

namespace madam::worker {
namespace {

class SyntheticTask final : public ClassifierTask {
 protected:
  std::shared_ptr<const ClassificationData> LoadData(const RunConfig&,
                                                     const TaskContext& context) override {
    const torch::Device device = context.device;
    return context.cache->GetOrLoad<ClassificationData>("synthetic|" + device.str(), [&] {
      ClassificationData d = MakeSyntheticData();
      d.train_x = d.train_x.to(device);
      d.train_y = d.train_y.to(device);
      d.test_x = d.test_x.to(device);
      d.test_y = d.test_y.to(device);
      return d;
    });
  }
  std::shared_ptr<TaskModel> MakeModel(const RunConfig&) override { return MakeMlp(20, 64, 4); }
};

}  // namespace

std::unique_ptr<Task> MakeSyntheticMlpTask() { return std::make_unique<SyntheticTask>(); }

}  // namespace madam::worker
