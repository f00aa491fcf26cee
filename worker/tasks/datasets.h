// Datasets of the paper's tasks, read from their real file formats.
//
// Every loader reads a whole split into one tensor at once (no per-sample
// objects), so the trainer batches with index_select/narrow. Loaders never
// throw: a missing, truncated or malformed file is a Status naming the path
// and what belongs there. Pure functions; thread-compatible.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace madam::worker {

// A classification dataset: inputs as float (already normalised), labels as
// int64 class indices.
struct ClassificationData {
  torch::Tensor train_x, train_y, test_x, test_y;
  int64_t num_classes = 0;
};

// A word-level language-modelling corpus: each split as one int64 stream of
// token ids (an <eos> after every line), with the vocabulary of the train split.
struct LanguageData {
  torch::Tensor train, valid, test;
  std::vector<std::string> vocab;  // id -> word
};

// Fashion-MNIST / MNIST idx files, read straight from gzip (plain files work
// too: zlib passes them through). Images come back as uint8 [n, rows, cols],
// labels as uint8 [n].
Result<torch::Tensor> ReadIdxImages(const std::string& path);
Result<torch::Tensor> ReadIdxLabels(const std::string& path);

// <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, normalised to
// zero mean / unit variance with the train split's statistics, shape [n, 784].
Result<ClassificationData> LoadFashionMnist(const std::string& dir);

// One CIFAR binary file: records of `label_bytes` label bytes (the last one is
// the label used) and 3072 pixel bytes. Images uint8 [n, 3, 32, 32], labels int64 [n].
struct CifarSplit {
  torch::Tensor images, labels;
};
Result<CifarSplit> ReadCifarBinary(const std::string& path, int label_bytes);

// CIFAR-10 (data_batch_1..5.bin, test_batch.bin) or CIFAR-100 (train.bin,
// test.bin; fine labels) under `dir`. Inputs stay uint8 [n, 3, 32, 32], as
// stored: the task augments and normalises each batch with its recipe's
// constants (pad black, then normalise, as the authors' transforms do).
Result<ClassificationData> LoadCifar(const std::string& dir, int num_classes);

// wiki.{train,valid,test}.tokens under `dir`.
Result<LanguageData> LoadWikiText(const std::string& dir);

// The synthetic task: 2000 train / 500 test samples, 20 features, 4 classes,
// from a fixed seed (independent of the run's seed), so every run sees the
// same data. Built in milliseconds.
ClassificationData MakeSyntheticData();

}  // namespace madam::worker
