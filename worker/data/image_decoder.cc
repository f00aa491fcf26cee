#include "worker/data/image_decoder.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cstring>

namespace madam::worker::data {
namespace {

constexpr int kMaxSide = 65500;  // the JPEG format's limit, applied to PNG too

bool IsJpeg(const uint8_t* d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }
bool IsPng(const uint8_t* d, size_t n) {
  static const uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return n >= 8 && std::memcmp(d, kSig, 8) == 0;
}

Status CheckSize(int64_t w, int64_t h, const char* what) {
  if (w <= 0 || h <= 0 || w > kMaxSide || h > kMaxSide || w * h > kMaxDecodedPixels) {
    return Status::DataLoss(std::string(what) + " size " + std::to_string(w) + "x" + std::to_string(h) +
                            " is empty or too large (at most " + std::to_string(kMaxDecodedPixels) +
                            " pixels)");
  }
  return Status::Ok();
}

// Whether the JPEG carries an Adobe APP14 segment before its first scan:
// Photoshop, which wrote ImageNet's CMYK files, stores CMYK inverted and
// marks it so; Pillow reads such files as inverted ("CMYK;I"), and so do we.
bool HasAdobeMarker(const uint8_t* d, size_t n) {
  size_t pos = 2;
  while (pos + 4 <= n) {
    if (d[pos] != 0xFF) return false;
    while (pos < n && d[pos] == 0xFF) ++pos;  // fill bytes
    if (pos + 3 > n) return false;
    const uint8_t marker = d[pos++];
    if (marker == 0xDA || marker == 0xD9) return false;  // SOS / EOI: no more headers
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length
    const size_t len = (size_t{d[pos]} << 8) | d[pos + 1];
    if (len < 2) return false;
    if (marker == 0xEE && len >= 7 && pos + 7 <= n && std::memcmp(d + pos + 2, "Adobe", 5) == 0) {
      return true;
    }
    pos += len;
  }
  return false;
}

// Pillow's MULDIV255: a * b / 255, rounded, in integers.
inline int MulDiv255(int a, int b) {
  const int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

// CMYK (as stored) to RGBX, in place, with Pillow's formula.
void CmykToRgbx(uint8_t* p, size_t pixels, bool inverted) {
  for (size_t i = 0; i < pixels; ++i, p += 4) {
    int c = p[0], m = p[1], y = p[2], k = p[3];
    if (inverted) {
      c = 255 - c;
      m = 255 - m;
      y = 255 - y;
      k = 255 - k;
    }
    const int nk = 255 - k;
    p[0] = static_cast<uint8_t>(std::clamp(nk - MulDiv255(c, nk), 0, 255));
    p[1] = static_cast<uint8_t>(std::clamp(nk - MulDiv255(m, nk), 0, 255));
    p[2] = static_cast<uint8_t>(std::clamp(nk - MulDiv255(y, nk), 0, 255));
    p[3] = 255;
  }
}

struct PngImage {
  png_image image;
  PngImage() {
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
  }
  ~PngImage() { png_image_free(&image); }
};

}  // namespace

void RgbxImage::Resize(int width, int height) {
  const size_t need = static_cast<size_t>(width) * static_cast<size_t>(height) * 4;
  // Shrink after an outsized image so one huge file does not pin its memory.
  if (need > capacity_ || (capacity_ > (size_t{64} << 20) && need < capacity_ / 4)) {
    data_.reset(new uint8_t[need]);  // default-initialised: no zero fill
    capacity_ = need;
  }
  width_ = width;
  height_ = height;
}

ImageDecoder::ImageDecoder() : tj_(tjInitDecompress()) {}

ImageDecoder::~ImageDecoder() {
  if (tj_ != nullptr) tjDestroy(tj_);
}

Status ImageDecoder::JpegFailure(const char* what) {
  Status s = Status::DataLoss(what + std::string(tjGetErrorStr2(tj_)));
  // TurboJPEG 2.1 leaves a handle whose header parse failed mid-marker in
  // that state: the next file's header then fails too ("Bogus DQT index").
  // A fresh handle per failure keeps one bad file from poisoning the rest.
  tjDestroy(tj_);
  tj_ = tjInitDecompress();
  return s;
}

const std::vector<ScaleFactor>& ImageDecoder::ReductionFactors() {
  static const std::vector<ScaleFactor> factors = [] {
    std::vector<ScaleFactor> out;
    int n = 0;
    const tjscalingfactor* all = tjGetScalingFactors(&n);
    for (int i = 0; all != nullptr && i < n; ++i) {
      if (all[i].num == 1 && (all[i].denom == 2 || all[i].denom == 4 || all[i].denom == 8)) {
        out.push_back({all[i].num, all[i].denom});
      }
    }
    std::sort(out.begin(), out.end(),
              [](const ScaleFactor& a, const ScaleFactor& b) { return a.value() < b.value(); });
    out.push_back({1, 1});
    return out;
  }();
  return factors;
}

ScaleFactor ChooseScale(const ImageInfo& info, double crop_w, double crop_h, int out_w, int out_h) {
  if (info.format != ImageFormat::kJpeg) return {1, 1};
  for (const ScaleFactor& f : ImageDecoder::ReductionFactors()) {
    // The crop in decoded pixels: libjpeg rounds scaled extents up, so use the
    // exact ratio of the scaled to the full size per axis.
    const double sx = static_cast<double>(f.Scaled(info.width)) / info.width;
    const double sy = static_cast<double>(f.Scaled(info.height)) / info.height;
    if (crop_w * sx >= out_w && crop_h * sy >= out_h) return f;
  }
  return {1, 1};
}

Result<ImageInfo> ImageDecoder::ReadInfo(const uint8_t* data, size_t size) {
  if (size == 0) return Status::DataLoss("empty file");
  ImageInfo info;
  if (IsJpeg(data, size)) {
    if (tj_ == nullptr) return Status::Internal("cannot initialise the TurboJPEG decompressor");
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    if (tjDecompressHeader3(tj_, data, static_cast<unsigned long>(size), &w, &h, &subsamp,
                            &colorspace) != 0) {
      return JpegFailure("not a readable JPEG: ");
    }
    info.format = ImageFormat::kJpeg;
    info.width = w;
    info.height = h;
  } else if (IsPng(data, size)) {
    PngImage png;
    if (!png_image_begin_read_from_memory(&png.image, data, size)) {
      return Status::DataLoss(std::string("not a readable PNG: ") + png.image.message);
    }
    info.format = ImageFormat::kPng;
    info.width = static_cast<int>(std::min<png_uint_32>(png.image.width, kMaxSide + 1));
    info.height = static_cast<int>(std::min<png_uint_32>(png.image.height, kMaxSide + 1));
  } else {
    return Status::DataLoss("neither a JPEG nor a PNG (unknown signature)");
  }
  MADAM_RETURN_IF_ERROR(CheckSize(info.width, info.height, "image"));
  return info;
}

Status ImageDecoder::Decode(const uint8_t* data, size_t size, ScaleFactor scale, RgbxImage& out) {
  if (size == 0) return Status::DataLoss("empty file");
  if (IsJpeg(data, size)) return DecodeJpeg(data, size, scale, out);
  if (IsPng(data, size)) return DecodePng(data, size, out);
  return Status::DataLoss("neither a JPEG nor a PNG (unknown signature)");
}

Status ImageDecoder::DecodeJpeg(const uint8_t* data, size_t size, ScaleFactor scale, RgbxImage& out) {
  if (tj_ == nullptr) return Status::Internal("cannot initialise the TurboJPEG decompressor");
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  const auto jpeg_size = static_cast<unsigned long>(size);
  if (tjDecompressHeader3(tj_, data, jpeg_size, &w, &h, &subsamp, &colorspace) != 0) {
    return JpegFailure("not a readable JPEG: ");
  }
  MADAM_RETURN_IF_ERROR(CheckSize(w, h, "JPEG"));
  const int sw = scale.Scaled(w), sh = scale.Scaled(h);
  out.Resize(sw, sh);
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  // Warnings (truncation, corrupt data) are failures: a partly grey image
  // in a batch would be a silent wrong sample. LIMITSCANS bounds the work a
  // malicious progressive file can cause.
  const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
  if (tjDecompress2(tj_, data, jpeg_size, out.data(), sw, static_cast<int>(out.stride()), sh,
                    cmyk ? TJPF_CMYK : TJPF_RGBX, flags) != 0) {
    return JpegFailure("JPEG decode failed: ");
  }
  if (cmyk) {
    CmykToRgbx(out.data(), static_cast<size_t>(sw) * static_cast<size_t>(sh), HasAdobeMarker(data, size));
  }
  return Status::Ok();
}

Status ImageDecoder::DecodePng(const uint8_t* data, size_t size, RgbxImage& out) {
  PngImage png;
  if (!png_image_begin_read_from_memory(&png.image, data, size)) {
    return Status::DataLoss(std::string("not a readable PNG: ") + png.image.message);
  }
  MADAM_RETURN_IF_ERROR(CheckSize(png.image.width, png.image.height, "PNG"));
  png.image.format = PNG_FORMAT_RGBA;  // alpha is then ignored, as Pillow's convert("RGB") does
  out.Resize(static_cast<int>(png.image.width), static_cast<int>(png.image.height));
  if (!png_image_finish_read(&png.image, nullptr, out.data(), static_cast<png_int_32>(out.stride()),
                             nullptr)) {
    return Status::DataLoss(std::string("PNG decode failed: ") + png.image.message);
  }
  if (PNG_IMAGE_FAILED(png.image)) {
    return Status::DataLoss(std::string("PNG decode failed: ") + png.image.message);
  }
  return Status::Ok();
}

}  // namespace madam::worker::data
