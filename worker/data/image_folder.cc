#include "worker/data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>
#include <unordered_map>

namespace madam::worker::data {

namespace fs = std::filesystem;

namespace {

bool HasImageExtension(const std::string& name) {
  const auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == "jpeg" || ext == "jpg" || ext == "png";
}

bool IsDirectory(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);  // follows symlinks
}

// Sorted names of the entries of `dir` that pass `keep` (hidden names
// dropped), or an error naming `dir`.
template <typename Keep>
Result<std::vector<std::string>> ListSorted(const fs::path& dir, Keep keep) {
  std::error_code ec;
  fs::directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec);
  if (ec) return Status::NotFound(dir.string() + ": cannot list: " + ec.message());
  std::vector<std::string> names;
  for (const fs::directory_iterator end; it != end; it.increment(ec)) {
    if (ec) break;
    std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (keep(it->path(), name)) names.push_back(std::move(name));
  }
  if (ec) return Status::DataLoss(dir.string() + ": error while listing: " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

std::string ImageFolderSplit::Path(int64_t i) const {
  const auto s = static_cast<size_t>(i);
  const uint64_t begin = name_begin_[s];
  const uint64_t end = s + 1 < name_begin_.size() ? name_begin_[s + 1] : names_.size();
  std::string out;
  const std::string& cls = class_dirs_[static_cast<size_t>(labels_[s])];
  out.reserve(root_.size() + cls.size() + (end - begin) + 2);
  out.append(root_).append("/").append(cls).append("/");
  out.append(names_, begin, end - begin);
  return out;
}

std::vector<int64_t> ImageFolderSplit::ClassCounts(int64_t num_classes) const {
  std::vector<int64_t> counts(static_cast<size_t>(num_classes), 0);
  for (int32_t l : labels_) ++counts[static_cast<size_t>(l)];
  return counts;
}

// Fills splits; a friend of ImageFolderSplit.
class ImageFolderScanner {
 public:
  // Scans `root`/CLASS/* for each CLASS of `present` (a subset of
  // `classes`, whose indices are the labels).
  static Status ScanSplit(const fs::path& root, const std::vector<std::string>& classes,
                          const std::vector<std::string>& present, ImageFolderSplit& split) {
    split.root_ = root.string();
    split.class_dirs_ = classes;
    std::unordered_map<std::string, int32_t> label_of;
    for (size_t i = 0; i < classes.size(); ++i) label_of[classes[i]] = static_cast<int32_t>(i);
    for (const std::string& cls : present) {
      const fs::path dir = root / cls;
      auto files = ListSorted(dir, [](const fs::path& p, const std::string& name) {
        if (!HasImageExtension(name)) return false;
        std::error_code ec;
        return fs::is_regular_file(p, ec);  // follows symlinks
      });
      if (!files.ok()) return files.status();
      if (files->empty()) {
        return Status::NotFound(dir.string() +
                                ": empty class folder (expected *.JPEG, *.jpg or *.png files)");
      }
      const int32_t label = label_of.at(cls);
      for (const std::string& f : *files) {
        split.labels_.push_back(label);
        split.name_begin_.push_back(split.names_.size());
        split.names_.append(f);
      }
    }
    return Status::Ok();
  }
};

Result<ImageFolderDataset> ScanImageFolder(const std::string& data_dir) {
  const fs::path root(data_dir);
  if (data_dir.empty() || !IsDirectory(root)) {
    return Status::NotFound((data_dir.empty() ? std::string("(empty --data-dir)") : data_dir) +
                            ": not a directory (expected an ImageFolder tree with train/CLASS/*.JPEG "
                            "and val/CLASS/*.JPEG)");
  }
  for (const char* split : {"train", "val"}) {
    if (!IsDirectory(root / split)) {
      return Status::NotFound((root / split).string() + ": missing (an ImageNet data directory holds "
                              "train/CLASS/*.JPEG and val/CLASS/*.JPEG)");
    }
  }
  auto only_dirs = [](const fs::path& p, const std::string&) { return IsDirectory(p); };
  auto train_classes = ListSorted(root / "train", only_dirs);
  if (!train_classes.ok()) return train_classes.status();
  if (train_classes->empty()) {
    return Status::NotFound((root / "train").string() + ": no class folders (expected train/CLASS/*.JPEG)");
  }
  auto val_classes = ListSorted(root / "val", only_dirs);
  if (!val_classes.ok()) return val_classes.status();
  if (val_classes->empty()) {
    return Status::NotFound((root / "val").string() + ": no class folders (expected val/CLASS/*.JPEG)");
  }
  for (const std::string& cls : *val_classes) {
    if (!std::binary_search(train_classes->begin(), train_classes->end(), cls)) {
      return Status::InvalidArgument((root / "val" / cls).string() +
                                     ": class not present in train/ (every val class needs a "
                                     "train folder of the same name)");
    }
  }
  ImageFolderDataset d;
  d.classes = *train_classes;
  MADAM_RETURN_IF_ERROR(ImageFolderScanner::ScanSplit(root / "train", d.classes, d.classes, d.train));
  MADAM_RETURN_IF_ERROR(ImageFolderScanner::ScanSplit(root / "val", d.classes, *val_classes, d.val));
  return d;
}

}  // namespace madam::worker::data
