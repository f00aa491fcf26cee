#include "worker/data/image_transform.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

namespace madam::worker::data {
namespace {

// Files larger than this are refused before reading (no ImageNet file comes
// close; a wrong path to a huge file must not be slurped).
constexpr int64_t kMaxFileBytes = int64_t{256} << 20;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

int TransformOptions::ValidationResize() const {
  return static_cast<int>(std::lround(image_size * 256.0 / 224.0));
}

Status TransformOptions::Validate() const {
  if (image_size < 8 || image_size > 4096) {
    return Status::InvalidArgument("image_size must be in [8, 4096], got " + std::to_string(image_size));
  }
  if (!(crop.min_area > 0 && crop.min_area <= crop.max_area && crop.max_area <= 1)) {
    return Status::InvalidArgument("crop area range must satisfy 0 < min <= max <= 1");
  }
  if (!(crop.min_ratio > 0 && crop.min_ratio <= crop.max_ratio)) {
    return Status::InvalidArgument("crop aspect range must satisfy 0 < min <= max");
  }
  if (crop.attempts < 1) return Status::InvalidArgument("crop attempts must be at least 1");
  if (!(flip_probability >= 0 && flip_probability <= 1)) {
    return Status::InvalidArgument("flip probability must be in [0, 1]");
  }
  for (float s : normalization.std) {
    if (!(s > 0)) return Status::InvalidArgument("normalisation std must be positive");
  }
  return Status::Ok();
}

ImageTransform::ImageTransform(const ImageFolderSplit* split, TransformOptions options)
    : split_(split), options_(std::move(options)) {}

Status ImageTransform::ReadFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Status::NotFound(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::DataLoss(path + ": cannot stat: " + std::strerror(errno));
  if (st.st_size <= 0) return Status::DataLoss(path + ": empty file");
  if (st.st_size > kMaxFileBytes) {
    return Status::DataLoss(path + ": " + std::to_string(st.st_size) + " bytes is too large for an image");
  }
  file_.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < file_.size()) {
    const ssize_t got = ::read(fd.get(), file_.data() + done, file_.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Status::DataLoss(path + ": read error: " + std::strerror(errno));
    if (got == 0) break;  // shrank while reading
    done += static_cast<size_t>(got);
  }
  file_.resize(done);
  return Status::Ok();
}

Status ImageTransform::Produce(int64_t index, int64_t epoch, float* dst, SampleTrace* trace) {
  const std::string path = split_->Path(index);
  Status read = ReadFile(path);
  if (!read.ok()) return read;
  Status s = ProduceFromBytes(file_.data(), file_.size(), index, epoch, dst, trace);
  if (!s.ok()) return Status(s.code(), path + ": " + s.message());
  return s;
}

Status ImageTransform::ProduceFromBytes(const uint8_t* data, size_t size, int64_t index, int64_t epoch,
                                        float* dst, SampleTrace* trace) {
  auto info = decoder_.ReadInfo(data, size);
  if (!info.ok()) return info.status();
  const int out = options_.image_size;
  CropBox box;
  bool flip = false, fell_back = false;
  if (options_.train) {
    SampleRng rng(options_.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index));
    box = RandomResizedCrop(info->width, info->height, options_.crop, rng, &fell_back);
    flip = rng.Uniform01() < options_.flip_probability;
  } else {
    box = ResizeThenCenterCrop(info->width, info->height, options_.ValidationResize(), out);
  }
  const ScaleFactor scale =
      options_.dct_scaling ? ChooseScale(*info, box.w, box.h, out, out) : ScaleFactor{1, 1};
  MADAM_RETURN_IF_ERROR(decoder_.Decode(data, size, scale, pixels_));
  // The box in decoded pixels (libjpeg rounds scaled extents up: use the
  // exact per-axis ratio).
  const double sx = static_cast<double>(pixels_.width()) / info->width;
  const double sy = static_cast<double>(pixels_.height()) / info->height;
  const CropBox scaled{box.x * sx, box.y * sy, box.w * sx, box.h * sy};
  resampler_.Run(pixels_, scaled, out, out, flip,
                 options_.train ? FilterDomain::kBox : FilterDomain::kImage, options_.normalization, dst);
  if (trace != nullptr) {
    trace->info = *info;
    trace->box = box;
    trace->scale = scale;
    trace->flipped = flip;
    trace->fell_back = fell_back;
  }
  return Status::Ok();
}

}  // namespace madam::worker::data
