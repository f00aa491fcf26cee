// The cifar10-cgan task and FID (worker/gan_networks.h, worker/fid.h,
// worker/fid_model.h): the Fréchet distance against pytorch-fid's
// computation (fixture from fid_reference.py), spectral normalisation
// against torch's SVD, --fid-model checks, and short CPU runs on generated
// CIFAR files with a tiny TorchScript feature extractor built here in C++.
#include <gtest/gtest.h>
#include <png.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/recipe.h"
#include "tests/unit/worker/collecting_sink.h"
#include "tests/unit/worker/test_files.h"
#include "worker/fid.h"
#include "worker/fid_model.h"
#include "worker/gan_networks.h"
#include "worker/trainer.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;
using namespace madam::worker::testing;

// Feature files and --fid-model files in a scratch directory.
class FidFilesTest : public ScratchDirTest {
 protected:
  FidFilesTest() : ScratchDirTest("madam_cgan_test") {}
};

// ---- the Fréchet distance -------------------------------------------------

struct ReferenceCase {
  std::string name;
  int64_t na = 0, nb = 0, dim = 0;
  std::vector<double> a, b;
  double fid = 0;
};

std::vector<ReferenceCase> ReadFixture(const std::string& path) {
  std::ifstream in(path);
  std::vector<ReferenceCase> out;
  std::string word;
  while (in >> word) {
    if (word == "#") {
      std::getline(in, word);
    } else if (word == "case") {
      ReferenceCase c;
      in >> c.name >> c.na >> c.nb >> c.dim;
      c.a.resize(c.na * c.dim);
      c.b.resize(c.nb * c.dim);
      for (double& x : c.a) in >> x;
      for (double& x : c.b) in >> x;
      in >> word >> c.fid;
      EXPECT_EQ(word, "fid") << c.name;
      out.push_back(std::move(c));
    }
  }
  return out;
}

TEST(FrechetDistanceTest, MatchesPytorchFidOnGeneratedFeatures) {
  auto cases = ReadFixture(MADAM_FID_FIXTURE);
  ASSERT_EQ(cases.size(), 6u) << MADAM_FID_FIXTURE;
  double worst = 0;
  std::string worst_case;
  for (const auto& c : cases) {
    auto a = StatsOfRows(c.a, c.na, c.dim);
    auto b = StatsOfRows(c.b, c.nb, c.dim);
    ASSERT_TRUE(a.ok() && b.ok()) << c.name;
    auto d = FrechetDistance(*a, *b);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    const double rel = std::fabs(*d - c.fid) / std::fabs(c.fid);
    EXPECT_LT(rel, 1e-4) << c.name << ": ours " << *d << ", pytorch-fid " << c.fid;
    if (rel > worst) {
      worst = rel;
      worst_case = c.name;
    }
  }
  std::printf("worst relative error against pytorch-fid: %.3g (%s)\n", worst, worst_case.c_str());
}

TEST(FrechetDistanceTest, ASetAgainstItselfIsZeroAndDimensionsMustAgree) {
  std::vector<double> rows;
  for (int i = 0; i < 40; ++i) {
    for (int j = 0; j < 5; ++j) rows.push_back(std::sin(i * 1.7 + j * 0.3) + 0.01 * i * j);
  }
  auto s = StatsOfRows(rows, 40, 5);
  ASSERT_TRUE(s.ok());
  auto d = FrechetDistance(*s, *s);
  ASSERT_TRUE(d.ok());
  // Square roots of the spectrum's smallest eigenvalues amplify rounding:
  // about sqrt(eps) of the traces (pytorch-fid's sqrtm does the same).
  EXPECT_NEAR(*d, 0.0, 1e-6);
  auto other = StatsOfRows(std::vector<double>(rows.begin(), rows.begin() + 40 * 4), 40, 4);
  ASSERT_TRUE(other.ok());
  auto bad = FrechetDistance(*s, *other);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("dimensions differ"), std::string::npos);
}

void SaveTensor(const torch::Tensor& t, const std::string& path) {
  auto bytes = torch::pickle_save(t);  // the format of Python's torch.save
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST_F(FidFilesTest, FidCommandReadsSavedFeatureTensors) {
  torch::manual_seed(1);
  auto a = torch::randn({50, 6}, torch::kFloat);
  auto b = torch::randn({60, 6}, torch::kFloat) * 1.5 + 0.2;
  SaveTensor(a, Path("a.pt"));
  SaveTensor(b, Path("b.pt"));
  const double expected = FrechetDistance(StatsOf(a), StatsOf(b));
  auto d = FidOfFeatureFiles(Path("a.pt"), Path("b.pt"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_NEAR(*d, expected, 1e-9 * expected);
  // The binary prints the same number.
  const std::string cmd = std::string(MADAM_WORKER_BINARY) + " fid --a " + Path("a.pt") +
                          " --b " + Path("b.pt");
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  double printed = -1;
  ASSERT_EQ(std::fscanf(p, "%lf", &printed), 1);
  EXPECT_EQ(::pclose(p), 0);
  EXPECT_NEAR(printed, expected, 1e-8 * expected);

  SaveTensor(torch::randn({50}), Path("flat.pt"));
  auto flat = FidOfFeatureFiles(Path("a.pt"), Path("flat.pt"));
  ASSERT_FALSE(flat.ok());
  EXPECT_NE(flat.status().message().find("2-D"), std::string::npos) << flat.status().message();
  SaveTensor(torch::randn({50, 7}), Path("seven.pt"));
  EXPECT_FALSE(FidOfFeatureFiles(Path("a.pt"), Path("seven.pt")).ok());
  WriteFile(Path("junk.pt"), "not a tensor");
  auto junk = FidOfFeatureFiles(Path("junk.pt"), Path("b.pt"));
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.status().message().find("junk.pt"), std::string::npos);
}

// ---- spectral normalisation ----------------------------------------------

double LargestSingularValue(const torch::Tensor& w) {
  return torch::linalg_svdvals(w.view({w.size(0), -1}).to(torch::kDouble))[0].item<double>();
}

TEST(SpectralNormTest, PowerIterationFindsTheLargestSingularValue) {
  torch::manual_seed(3);
  SNLinear linear(20, 30);
  SNConv2d conv(8, 12, 3);
  auto x = torch::randn({4, 20});
  auto img = torch::randn({2, 8, 6, 6});
  for (int i = 0; i < 200; ++i) {  // training mode: one power-iteration step per forward
    linear->forward(x);
    conv->forward(img);
  }
  const double linear_svd = LargestSingularValue(linear->weight);
  EXPECT_NEAR(linear->sigma(), linear_svd, 1e-4 * linear_svd);
  const double conv_svd = LargestSingularValue(conv->weight);
  EXPECT_NEAR(SpectralNormEstimate(conv->weight, conv->u), conv_svd, 1e-4 * conv_svd);
  // The normalised weight's largest singular value is 1.
  auto normalised = SpectrallyNormalised(linear->weight, linear->u, false);
  EXPECT_NEAR(LargestSingularValue(normalised.detach()), 1.0, 1e-4);
  // Evaluation mode leaves u alone.
  linear->eval();
  auto u = linear->u.clone();
  linear->forward(x);
  EXPECT_TRUE(torch::equal(u, linear->u));
}

TEST(SpectralNormTest, UVectorsAreBuffersThatCheckpointsKeep) {
  torch::manual_seed(4);
  CganDiscriminator d(8);
  int u_buffers = 0;
  for (const auto& b : d->named_buffers()) {
    const std::string& n = b.key();
    if (n == "embed_u" || (n.size() >= 2 && n.compare(n.size() - 2, 2, ".u") == 0)) ++u_buffers;
  }
  EXPECT_GE(u_buffers, 9);  // every conv, the linear layer and the projection
  auto x = torch::randn({3, 3, 32, 32});
  auto y = torch::tensor({0, 4, 9}, torch::kLong);
  for (int i = 0; i < 3; ++i) d->forward(x, y);
  torch::serialize::OutputArchive out;
  d->save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  torch::manual_seed(5);
  CganDiscriminator e(8);
  std::istringstream in_bytes(bytes.str());
  torch::serialize::InputArchive in;
  in.load_from(in_bytes);
  e->load(in);
  // Same weights and same u: the next training-mode forward agrees exactly.
  EXPECT_TRUE(torch::equal(d->forward(x, y), e->forward(x, y)));
}

TEST(CganNetworksTest, ShapesAndRanges) {
  torch::manual_seed(6);
  CganGenerator g(16, 1.0);
  CganDiscriminator d(16);
  auto z = torch::randn({5, kGanLatentDim});
  auto y = torch::tensor({0, 1, 2, 3, 9}, torch::kLong);
  auto images = g->forward(z, y);
  ASSERT_EQ(images.sizes(), (std::vector<int64_t>{5, 3, 32, 32}));
  EXPECT_LE(images.abs().max().item<double>(), 1.0);
  EXPECT_EQ(d->forward(images, y).sizes(), (std::vector<int64_t>{5}));
  bool gamma = false;
  for (const auto& p : g->named_parameters()) {
    if (p.key() == "attention.gamma") gamma = p.value().item<double>() == 1.0;
  }
  EXPECT_TRUE(gamma);
}

// ---- --fid-model -----------------------------------------------------------

// A tiny TorchScript feature extractor: 4x4 average pooling, then a fixed
// random projection to `dim` features.
void WriteFeatureModule(const std::string& path, const std::string& body, int64_t dim = 16) {
  torch::jit::Module m("TinyFeatures");
  torch::manual_seed(7);
  m.register_buffer("w", torch::randn({48, dim}));
  m.define("def forward(self, x):\n" + body);
  m.save(path);
}
const char* const kGoodBody =
    "    y = torch.adaptive_avg_pool2d(x, [4, 4]).flatten(1)\n"
    "    return torch.tanh(torch.mm(y, self.w))\n";

TEST_F(FidFilesTest, BadFidModelsAreRejectedWithTheReason) {
  WriteFeatureModule(Path("good.pt"), kGoodBody);
  EXPECT_TRUE(CheckFidModel(Path("good.pt")).ok()) << CheckFidModel(Path("good.pt")).ToString();

  WriteFile(Path("text.pt"), "def forward(x): return x\n");
  Status s = CheckFidModel(Path("text.pt"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a TorchScript module"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("text.pt"), std::string::npos);

  EXPECT_FALSE(CheckFidModel(Path("missing.pt")).ok());

  WriteFeatureModule(Path("rank1.pt"), "    return x.mean([1, 2, 3])\n");
  s = CheckFidModel(Path("rank1.pt"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("N x D"), std::string::npos) << s.message();

  WriteFeatureModule(Path("one.pt"), "    return x.flatten(1).mean(1, True)\n");
  s = CheckFidModel(Path("one.pt"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("at least 2"), std::string::npos) << s.message();
}

// ---- the task ------------------------------------------------------------

class CganTaskTest : public ScratchDirTest {
 protected:
  CganTaskTest() : ScratchDirTest("madam_cgan_test") {}
  void SetUp() override {
    ScratchDirTest::SetUp();
    WriteCifar10Dir(Path("cifar"), 24, 10);  // 120 training images
    WriteFeatureModule(Path("features.pt"), kGoodBody);
  }
  WorkerOptions Options(bool fid) const {
    WorkerOptions o;
    o.device = "cpu";
    o.threads = 1;
    o.data_dir = Path("cifar");
    if (fid) o.fid_model = Path("features.pt");
    return o;
  }
  // The recipe at a test's size: narrow networks, 4 steps an epoch.
  RunConfig Config(const std::string& optimizer, RunParams extra = {}) const {
    extra["task"] = ParamValue::String("cifar10-cgan");
    extra["optimizer"] = ParamValue::String(optimizer);
    extra.emplace("epochs", ParamValue::Number(2));
    extra.emplace("batch_size", ParamValue::Number(32));
    extra.emplace("gan_channels", ParamValue::Number(16));
    extra.emplace("fid_samples", ParamValue::Number(64));
    extra.emplace("fid_every", ParamValue::Number(1));
    extra.emplace("layer_stats_per_epoch", ParamValue::Number(0));
    extra.emplace("lr_milestones", ParamValue::List({1}));  // a decay inside the run
    auto c = ResolveConfig(extra, {});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return *c;
  }
};

std::map<std::string, double> WithoutTiming(std::map<std::string, double> m) {
  m.erase("samples_per_second");
  return m;
}

TEST_F(CganTaskTest, TrainsBothNetworksReportsFidAndResumesExactly) {
  for (const char* optimizer : {"adam", "madam", "int_madam"}) {
    SCOPED_TRACE(optimizer);
    Trainer trainer(Options(true));
    RunConfig config = Config(optimizer);
    CollectingSink sink;
    RunHooks hooks;
    hooks.sink = &sink;
    hooks.checkpoint_dir = Path(std::string("ckpt-") + optimizer);
    hooks.output_dir = Path(std::string("out-") + optimizer);
    RunSummary full = trainer.Run(config, hooks);
    ASSERT_EQ(full.status, "succeeded") << full.error;
    EXPECT_EQ(full.steps, 8);
    for (const char* name : {"train/loss_d", "train/loss_g", "test/fid", "lr"}) {
      ASSERT_EQ(full.final.count(name), 1u) << name;
      EXPECT_TRUE(std::isfinite(full.final[name])) << name;
    }
    EXPECT_GT(full.final["test/fid"], 0.0);
    EXPECT_EQ(full.final.count("train/loss"), 0u);
    int fid_points = 0;
    for (const auto& p : sink.points) fid_points += p.name == "test/fid";
    EXPECT_EQ(fid_points, 2);  // fid_every 1: after both epochs

    // The sample grids: 10 x 10 CIFAR images, one per FID evaluation.
    for (int epoch : {1, 2}) {
      png_image image{};
      image.version = PNG_IMAGE_VERSION;
      const std::string png = hooks.output_dir + "/samples-epoch-" + std::to_string(epoch) + ".png";
      ASSERT_TRUE(png_image_begin_read_from_file(&image, png.c_str())) << png;
      EXPECT_EQ(image.width, 320u);
      EXPECT_EQ(image.height, 320u);
      png_image_free(&image);
    }

    // From the epoch-1 checkpoint (both networks, both optimisers, the u
    // vectors and BatchNorm statistics) to the same end.
    RunHooks resume;
    resume.resume_from = hooks.checkpoint_dir + "/epoch-1.pt";
    RunSummary resumed = trainer.Run(config, resume);
    ASSERT_EQ(resumed.status, "succeeded") << resumed.error;
    EXPECT_EQ(resumed.steps, 8);
    EXPECT_EQ(WithoutTiming(resumed.final), WithoutTiming(full.final));
  }
}

TEST_F(CganTaskTest, WithoutAFidModelTheRunReportsLossesOnly) {
  Trainer trainer(Options(false));
  RunSummary s = trainer.Run(Config("sgd", {{"epochs", ParamValue::Number(1)}}), RunHooks{});
  ASSERT_EQ(s.status, "succeeded") << s.error;
  EXPECT_EQ(s.final.count("train/loss_d"), 1u);
  EXPECT_EQ(s.final.count("train/loss_g"), 1u);
  EXPECT_EQ(s.final.count("test/fid"), 0u);
}

TEST_F(CganTaskTest, ABadFidModelFailsTheRunBeforeTraining) {
  WriteFile(Path("bad.pt"), "not a module");
  WorkerOptions o = Options(false);
  o.fid_model = Path("bad.pt");
  Trainer trainer(o);
  RunSummary s = trainer.Run(Config("adam"), RunHooks{});
  EXPECT_EQ(s.status, "failed");
  EXPECT_EQ(s.steps, 0);
  EXPECT_NE(s.error.find("--fid-model"), std::string::npos) << s.error;
  EXPECT_NE(s.error.find("bad.pt"), std::string::npos) << s.error;
}

// The command lines refuse a bad --fid-model before anything trains: train
// with a usage error, serve mode before it contacts a coordinator.
TEST_F(CganTaskTest, CommandsRefuseABadFidModelUpFront) {
  WriteFeatureModule(Path("rank1.pt"), "    return x.mean([1, 2, 3])\n");
  const std::string bin = MADAM_WORKER_BINARY;
  const std::string train = bin + " train --task cifar10-cgan --optimizer adam --device cpu --data-dir " +
                            Path("cifar") + " --no-progress --summary-json " + Path("s.json") +
                            " --fid-model " + Path("rank1.pt") + " 2>" + Path("train.err");
  int rc = std::system(train.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  std::ifstream err(Path("train.err"));
  std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("--fid-model " + Path("rank1.pt")), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(Path("s.json")));  // no run took place

  const std::string serve = bin + " --coordinator 127.0.0.1:1 --max-runs 1 --fid-model " +
                            Path("missing.pt") + " 2>" + Path("serve.err");
  rc = std::system(serve.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  std::ifstream serr(Path("serve.err"));
  std::string stext((std::istreambuf_iterator<char>(serr)), std::istreambuf_iterator<char>());
  EXPECT_NE(stext.find("missing.pt"), std::string::npos) << stext;
}

TEST_F(CganTaskTest, ABitExportOfTwoNetworksIsRefusedBeforeTraining) {
  Trainer trainer(Options(false));
  RunHooks hooks;
  hooks.export_model = Path("model.bin");
  RunSummary s = trainer.Run(Config("int_madam"), hooks);
  EXPECT_EQ(s.status, "failed");
  EXPECT_EQ(s.steps, 0);
  EXPECT_NE(s.error.find("one network"), std::string::npos) << s.error;
}

TEST_F(CganTaskTest, TooManyFidSamplesIsAnError) {
  Trainer trainer(Options(true));
  RunSummary s = trainer.Run(Config("adam", {{"fid_samples", ParamValue::Number(1000)}}), RunHooks{});
  EXPECT_EQ(s.status, "failed");
  EXPECT_NE(s.error.find("fid_samples"), std::string::npos) << s.error;
}

TEST_F(CganTaskTest, AGeneratorThatBlowsUpDivergesTheRun) {
  Trainer trainer(Options(true));
  RunSummary s = trainer.Run(Config("sgd", {{"lr", ParamValue::Number(1e35)}}), RunHooks{});
  EXPECT_EQ(s.status, "diverged") << s.error;
}

TEST(CganRecipeTest, ResolvesTheAuthorsSettings) {
  RunParams given{{"task", ParamValue::String("cifar10-cgan")},
                  {"optimizer", ParamValue::String("adam")}};
  auto adam = ResolveConfig(given, {});
  ASSERT_TRUE(adam.ok()) << adam.status().ToString();
  EXPECT_EQ(adam->epochs, 121);
  EXPECT_EQ(adam->batch_size, 256);
  EXPECT_EQ(adam->adam_beta1, 0.0);
  EXPECT_EQ(adam->adam_beta2, 0.999);
  EXPECT_EQ(adam->lr_milestones, std::vector<int64_t>{100});
  EXPECT_EQ(adam->bias_init, "normal");
  EXPECT_EQ(adam->attention_gain_init, 1.0);
  EXPECT_EQ(adam->fid_samples, 10000);
  EXPECT_EQ(adam->fid_every, 10);
  given["optimizer"] = ParamValue::String("int_madam");
  auto bits = ResolveConfig(given, {});
  ASSERT_TRUE(bits.ok());
  // lr_factor 10 at the start, 1 after the decay at epoch 100.
  EXPECT_DOUBLE_EQ(bits->lr / bits->base_lr, 10.0);
  EXPECT_DOUBLE_EQ(bits->lr_factor_decay, bits->lr / bits->base_lr);
  given["optimizer"] = ParamValue::String("sgd");
  auto sgd = ResolveConfig(given, {});
  ASSERT_TRUE(sgd.ok());
  EXPECT_EQ(sgd->momentum, 0.0);
}

}  // namespace
}  // namespace madam::worker
