#include "worker/checkpoint_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "worker/trainer.h"

namespace madam::worker {
namespace {

namespace fs = std::filesystem;

// Opens `path` (a file or a directory) and fsyncs it.
Status SyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Internal(path + ": cannot open to sync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::Internal(path + ": fsync failed: " + std::strerror(err));
  return Status::Ok();
}

uint64_t UniqueSuffix() {
  static std::atomic<uint64_t> counter{0};
  return (static_cast<uint64_t>(std::random_device{}()) << 20) ^ counter.fetch_add(1);
}

}  // namespace

std::string CheckpointName(int64_t epoch) { return "epoch-" + std::to_string(epoch) + ".pt"; }

Status WriteFileDurably(const std::string& dir, const std::string& name,
                        const std::function<void(const std::string& tmp_path)>& write,
                        const std::function<void()>& before_publish) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::Internal(dir + ": cannot create the checkpoint directory: " + ec.message());
  const fs::path final_path = fs::path(dir) / name;
  const fs::path tmp = fs::path(dir) / (name + ".tmp-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(UniqueSuffix()));
  write(tmp.string());
  Status synced = SyncPath(tmp.string());
  if (!synced.ok()) {
    fs::remove(tmp, ec);
    return synced;
  }
  if (before_publish) before_publish();
  fs::rename(tmp, final_path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return Status::Internal(final_path.string() + ": cannot rename into place: " + ec.message());
  }
  return SyncPath(dir);
}

void PruneCheckpoints(const std::string& dir, int keep) {
  const auto all = ListCheckpoints(dir);
  for (size_t i = static_cast<size_t>(std::max(keep, 0)); i < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
  }
}

int64_t CheckpointEpoch(const std::string& path) {
  const std::string f = fs::path(path).filename().string();
  if (f.size() < 10 || f.rfind("epoch-", 0) != 0 || f.compare(f.size() - 3, 3, ".pt") != 0) {
    return -1;
  }
  const std::string digits = f.substr(6, f.size() - 9);
  if (digits.empty() || digits.size() > 12 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return -1;
  }
  return std::stoll(digits);
}

std::vector<std::string> ListCheckpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const int64_t epoch = CheckpointEpoch(it->path().string());
    if (epoch >= 0) found.emplace_back(epoch, it->path().string());
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::string FindLatestCheckpoint(const std::string& dir) {
  auto all = ListCheckpoints(dir);
  return all.empty() ? std::string() : all.front();
}

}  // namespace madam::worker
