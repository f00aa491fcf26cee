// Writers of small image files and ImageFolder trees for the ImageNet
// pipeline's tests: real JPEGs from TurboJPEG's compressor (RGB, greyscale,
// CMYK), real PNGs from libpng, and damaged copies. Torch-free.
#pragma once

#include <png.h>
#include <turbojpeg.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace madam::worker::testing {

// Interleaved 8-bit pixels, `channels` a pixel.
struct Pixels {
  int width = 0, height = 0, channels = 3;
  std::vector<uint8_t> data;
  uint8_t& at(int x, int y, int c) { return data[(static_cast<size_t>(y) * width + x) * channels + c]; }
  uint8_t at(int x, int y, int c) const { return data[(static_cast<size_t>(y) * width + x) * channels + c]; }
};

inline Pixels MakePixels(int width, int height, int channels) {
  Pixels p;
  p.width = width;
  p.height = height;
  p.channels = channels;
  p.data.assign(static_cast<size_t>(width) * height * channels, 0);
  return p;
}

// A smooth colour image (gradients and a slow wave), distinct per `seed`:
// JPEG keeps it to within a few levels.
inline Pixels SmoothRgb(int width, int height, int seed) {
  Pixels p = MakePixels(width, height, 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double u = static_cast<double>(x) / width, v = static_cast<double>(y) / height;
      p.at(x, y, 0) = static_cast<uint8_t>(40 + 170 * u);
      p.at(x, y, 1) = static_cast<uint8_t>(40 + 170 * v);
      p.at(x, y, 2) = static_cast<uint8_t>(128 + 60 * std::sin(6.0 * (u + v) + seed));
    }
  }
  return p;
}

inline Pixels Constant(int width, int height, int channels, std::vector<uint8_t> value) {
  Pixels p = MakePixels(width, height, channels);
  for (size_t i = 0; i < p.data.size(); ++i) p.data[i] = value[i % static_cast<size_t>(channels)];
  return p;
}

// JPEG bytes from TurboJPEG's compressor. `pixel_format` TJPF_RGB (3
// channels), TJPF_GRAY (1) or TJPF_CMYK (4; written as YCCK with Adobe's
// marker, the stored values taken as given: Adobe-style inverted CMYK).
inline std::string EncodeJpeg(const Pixels& p, int pixel_format, int quality = 95,
                              int subsamp = TJSAMP_420) {
  tjhandle h = tjInitCompress();
  if (h == nullptr) throw std::runtime_error("tjInitCompress failed");
  if (pixel_format == TJPF_GRAY) subsamp = TJSAMP_GRAY;
  unsigned char* out = nullptr;
  unsigned long size = 0;
  const int rc = tjCompress2(h, p.data.data(), p.width, 0, p.height, pixel_format, &out, &size, subsamp,
                             quality, 0);
  std::string bytes;
  if (rc == 0) bytes.assign(reinterpret_cast<const char*>(out), size);
  std::string err = rc == 0 ? "" : tjGetErrorStr2(h);
  tjFree(out);
  tjDestroy(h);
  if (rc != 0) throw std::runtime_error("tjCompress2 failed: " + err);
  return bytes;
}

// PNG bytes (RGB) from libpng's simplified writer.
inline std::string EncodePng(const Pixels& p) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(p.width);
  image.height = static_cast<png_uint_32>(p.height);
  image.format = p.channels == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, p.data.data(), 0, nullptr)) {
    throw std::runtime_error(std::string("png size query failed: ") + image.message);
  }
  std::string bytes(size, '\0');
  if (!png_image_write_to_memory(&image, bytes.data(), &size, 0, p.data.data(), 0, nullptr)) {
    throw std::runtime_error(std::string("png write failed: ") + image.message);
  }
  bytes.resize(size);
  return bytes;
}

inline void WriteBytes(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// A small ImageNet-shaped tree under `root`: three classes (a_cls, b_cls,
// c_cls) in train/ with `per_class` images of varied sizes each, and two of
// them in val/. Train holds the real ImageNet oddities: a greyscale JPEG, a
// CMYK JPEG and a PNG named .JPEG (class a_cls), and, if `truncated`, one
// truncated JPEG (class b_cls, named "b_truncated.JPEG").
inline void WriteImageFolder(const std::filesystem::path& root, int per_class, bool truncated) {
  const char* classes[] = {"a_cls", "b_cls", "c_cls"};
  int seed = 0;
  for (int c = 0; c < 3; ++c) {
    for (int i = 0; i < per_class; ++i, ++seed) {
      const int w = 40 + (seed * 37) % 90, h = 36 + (seed * 53) % 80;  // 40..129 x 36..115
      WriteBytes(root / "train" / classes[c] / ("img" + std::to_string(i) + ".JPEG"),
                 EncodeJpeg(SmoothRgb(w, h, seed), TJPF_RGB, 90));
    }
    if (c < 2) {
      WriteBytes(root / "val" / classes[c] / "val0.JPEG", EncodeJpeg(SmoothRgb(64, 48, 100 + c), TJPF_RGB, 90));
      WriteBytes(root / "val" / classes[c] / "val1.JPEG", EncodeJpeg(SmoothRgb(50, 70, 200 + c), TJPF_RGB, 90));
    }
  }
  Pixels grey = MakePixels(60, 45, 1);
  for (int y = 0; y < 45; ++y)
    for (int x = 0; x < 60; ++x) grey.at(x, y, 0) = static_cast<uint8_t>(60 + 2 * x);
  WriteBytes(root / "train" / "a_cls" / "grey.JPEG", EncodeJpeg(grey, TJPF_GRAY, 90));
  WriteBytes(root / "train" / "a_cls" / "cmyk.JPEG", EncodeJpeg(Constant(48, 40, 4, {200, 120, 60, 255}), TJPF_CMYK, 95));
  WriteBytes(root / "train" / "a_cls" / "png.JPEG", EncodePng(SmoothRgb(52, 44, 7)));
  if (truncated) {
    const std::string full = EncodeJpeg(SmoothRgb(90, 80, 9), TJPF_RGB, 90);
    WriteBytes(root / "train" / "b_cls" / "b_truncated.JPEG", full.substr(0, full.size() / 2));
  }
}

}  // namespace madam::worker::testing
