// ImageFolder scanning: the ImageNet layout of ARCHITECTURE.md section 6,
// `DATA/train/CLASS/*.JPEG` and `DATA/val/CLASS/*.JPEG`.
//
// Classes are the sub-directories of train/, in sorted (byte-wise) order;
// label i is the i-th class. val/ may hold a subset of train's classes (its
// labels index train's list). Files are sorted by name within a class, so a
// scan of the same tree always yields the same sample order. Image files are
// those named *.jpeg, *.jpg or *.png, case-insensitively (the decoder sniffs
// the content anyway: real ImageNet has a PNG named .JPEG); other files and
// hidden entries are ignored, as torchvision's ImageFolder does.
//
// Errors are values naming the path: a data directory without train/ or val/,
// a class folder without images, a class in val/ that train/ lacks.
//
// A split stores paths compactly (one name arena, no string per sample): the
// full ImageNet train split is 1.28 M files. Immutable after the scan, so a
// const split is safe to read from any number of threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace madam::worker::data {

class ImageFolderSplit {
 public:
  int64_t size() const { return static_cast<int64_t>(labels_.size()); }
  // The sample's file, as `root/CLASS/NAME`. REQUIRES: 0 <= i < size().
  std::string Path(int64_t i) const;
  int64_t Label(int64_t i) const { return labels_[static_cast<size_t>(i)]; }
  const std::string& root() const { return root_; }
  // The number of samples of each class (index = label).
  std::vector<int64_t> ClassCounts(int64_t num_classes) const;

 private:
  friend class ImageFolderScanner;
  std::string root_;                        // DATA/train or DATA/val
  std::vector<std::string> class_dirs_;     // as named on disk, index = label
  std::vector<int32_t> labels_;             // per sample
  std::vector<uint64_t> name_begin_;        // per sample, offset into names_
  std::string names_;                       // file names, back to back
};

struct ImageFolderDataset {
  std::vector<std::string> classes;  // sorted; index = label
  ImageFolderSplit train, val;
  int64_t num_classes() const { return static_cast<int64_t>(classes.size()); }
};

// Scans `data_dir`/train and `data_dir`/val. Symlinked files and directories
// are followed (ImageNet trees are often links into shared storage).
Result<ImageFolderDataset> ScanImageFolder(const std::string& data_dir);

}  // namespace madam::worker::data
