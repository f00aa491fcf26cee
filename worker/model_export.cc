#include "worker/model_export.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

namespace madam::worker {
namespace {

constexpr char kMagic[4] = {'M', 'D', 'M', 'Q'};
constexpr uint32_t kVersion = 1;
enum Kind : uint8_t { kLadder = 0, kFloatParam = 1, kFloatBuffer = 2 };

class Writer {
 public:
  template <typename T>
  void Put(T v) { buf_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void PutString(const std::string& s) {
    Put<uint32_t>(static_cast<uint32_t>(s.size()));
    buf_ += s;
  }
  void PutBytes(const std::string& s) { buf_ += s; }
  const std::string& data() const { return buf_; }

 private:
  std::string buf_;
};

class Reader {
 public:
  Reader(std::string data, std::string path) : data_(std::move(data)), path_(std::move(path)) {}
  template <typename T>
  Status Get(T* v) {
    if (pos_ + sizeof(T) > data_.size()) return Truncated();
    std::memcpy(v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status GetBytes(size_t n, std::string* out) {
    if (pos_ + n > data_.size()) return Truncated();
    out->assign(data_, pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  Status GetString(std::string* out) {
    uint32_t n = 0;
    MADAM_RETURN_IF_ERROR(Get(&n));
    return GetBytes(n, out);
  }

 private:
  Status Truncated() const { return Status::DataLoss(path_ + ": truncated model export"); }
  std::string data_;
  std::string path_;
  size_t pos_ = 0;
};

void PutShape(Writer& w, const torch::Tensor& t) {
  w.Put<uint32_t>(static_cast<uint32_t>(t.dim()));
  for (auto d : t.sizes()) w.Put<int64_t>(d);
}

void PutFloats(Writer& w, const torch::Tensor& t) {
  auto f = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
  w.PutBytes(std::string(reinterpret_cast<const char*>(f.data_ptr<float>()),
                         static_cast<size_t>(f.numel()) * sizeof(float)));
}

}  // namespace

std::string PackBits(const std::vector<uint32_t>& values, int bits) {
  std::string out((values.size() * static_cast<size_t>(bits) + 7) / 8, '\0');
  size_t bit = 0;
  for (uint32_t v : values) {
    for (int b = 0; b < bits; ++b, ++bit) {
      if ((v >> b) & 1u) out[bit / 8] = static_cast<char>(out[bit / 8] | (1 << (bit % 8)));
    }
  }
  return out;
}

std::vector<uint32_t> UnpackBits(const std::string& packed, int64_t count, int bits) {
  std::vector<uint32_t> out(static_cast<size_t>(count), 0);
  size_t bit = 0;
  for (auto& v : out) {
    for (int b = 0; b < bits; ++b, ++bit) {
      if ((static_cast<unsigned char>(packed[bit / 8]) >> (bit % 8)) & 1u) v |= (1u << b);
    }
  }
  return out;
}

Result<ExportStats> ExportIntegerModel(const torch::nn::Module& model,
                                       const madam::optim::IntegerMadam& optimizer,
                                       const std::string& task, const std::string& path) {
  const auto& options =
      static_cast<const madam::optim::IntegerMadamOptions&>(optimizer.defaults());
  const int bits = static_cast<int>(options.bits());
  auto params = model.named_parameters(/*recurse=*/true);
  auto buffers = model.named_buffers(/*recurse=*/true);
  Writer w;
  w.PutBytes(std::string(kMagic, 4));
  w.Put<uint32_t>(kVersion);
  w.PutString(task);
  w.Put<uint32_t>(static_cast<uint32_t>(bits));
  w.Put<double>(options.base_lr());
  w.Put<uint32_t>(static_cast<uint32_t>(params.size() + buffers.size()));
  ExportStats stats;
  for (const auto& item : params) {
    const auto& p = item.value();
    w.PutString(item.key());
    const auto* state = optimizer.param_state(p);
    stats.fp32_bytes += p.numel() * 4;
    if (state == nullptr || !state->levels().defined()) {
      w.Put<uint8_t>(kFloatParam);
      PutShape(w, p);
      PutFloats(w, p);
      continue;
    }
    w.Put<uint8_t>(kLadder);
    PutShape(w, p);
    w.Put<double>(state->max());
    auto k = madam::optim::DecodeLevels(state->levels()).to(torch::kCPU, torch::kInt).contiguous();
    auto neg = p.detach().lt(0).to(torch::kCPU).contiguous();
    const int32_t* kp = k.data_ptr<int32_t>();
    const bool* np = neg.data_ptr<bool>();
    std::vector<uint32_t> levels(static_cast<size_t>(k.numel()));
    std::vector<uint32_t> signs(levels.size());
    for (size_t i = 0; i < levels.size(); ++i) {
      levels[i] = static_cast<uint32_t>(kp[i]);
      signs[i] = np[i] ? 1u : 0u;
    }
    w.PutBytes(PackBits(levels, bits));
    w.PutBytes(PackBits(signs, 1));
  }
  for (const auto& item : buffers) {
    w.PutString(item.key());
    w.Put<uint8_t>(kFloatBuffer);
    PutShape(w, item.value());
    PutFloats(w, item.value());
    stats.fp32_bytes += item.value().numel() * 4;
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Status::FailedPrecondition(path + ": cannot write model export");
    out.write(w.data().data(), static_cast<std::streamsize>(w.data().size()));
    if (!out) return Status::DataLoss(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::FailedPrecondition(path + ": cannot rename " + tmp);
  }
  stats.file_bytes = static_cast<int64_t>(w.data().size());
  return stats;
}

Status LoadExportedModel(const std::string& path, const std::string& task,
                         torch::nn::Module& model) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open (expected a madam model export)");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Reader r(std::move(data), path);
  std::string magic;
  MADAM_RETURN_IF_ERROR(r.GetBytes(4, &magic));
  if (magic != std::string(kMagic, 4)) return Status::DataLoss(path + ": not a madam model export");
  uint32_t version = 0, bits = 0, count = 0;
  double base_lr = 0;
  std::string file_task;
  MADAM_RETURN_IF_ERROR(r.Get(&version));
  if (version != kVersion) {
    return Status::DataLoss(path + ": unsupported export version " + std::to_string(version));
  }
  MADAM_RETURN_IF_ERROR(r.GetString(&file_task));
  if (file_task != task) {
    return Status::InvalidArgument(path + ": export is for task " + file_task + ", not " + task);
  }
  MADAM_RETURN_IF_ERROR(r.Get(&bits));
  MADAM_RETURN_IF_ERROR(r.Get(&base_lr));
  MADAM_RETURN_IF_ERROR(r.Get(&count));
  if (bits < 1 || bits > 16) return Status::DataLoss(path + ": bad bit width " + std::to_string(bits));

  std::map<std::string, torch::Tensor> targets;
  for (auto& item : model.named_parameters(true)) targets[item.key()] = item.value();
  for (auto& item : model.named_buffers(true)) targets[item.key()] = item.value();
  if (count != targets.size()) {
    return Status::InvalidArgument(path + ": export holds " + std::to_string(count) +
                                   " tensors, the model has " + std::to_string(targets.size()));
  }
  torch::NoGradGuard no_grad;
  for (uint32_t e = 0; e < count; ++e) {
    std::string name;
    uint8_t kind = 0;
    uint32_t rank = 0;
    MADAM_RETURN_IF_ERROR(r.GetString(&name));
    MADAM_RETURN_IF_ERROR(r.Get(&kind));
    MADAM_RETURN_IF_ERROR(r.Get(&rank));
    if (rank > 8) return Status::DataLoss(path + ": bad rank for " + name);
    std::vector<int64_t> shape(rank);
    int64_t n = 1;
    for (auto& d : shape) {
      MADAM_RETURN_IF_ERROR(r.Get(&d));
      if (d < 0 || d > (int64_t{1} << 32)) return Status::DataLoss(path + ": bad shape for " + name);
      n *= d;
    }
    auto it = targets.find(name);
    if (it == targets.end()) return Status::InvalidArgument(path + ": model has no tensor " + name);
    torch::Tensor& target = it->second;
    if (target.sizes() != torch::IntArrayRef(shape)) {
      return Status::InvalidArgument(path + ": shape of " + name + " does not match the model");
    }
    torch::Tensor value;
    if (kind == kLadder) {
      double sigma = 0;
      MADAM_RETURN_IF_ERROR(r.Get(&sigma));
      std::string level_bytes, sign_bytes;
      MADAM_RETURN_IF_ERROR(r.GetBytes((static_cast<size_t>(n) * bits + 7) / 8, &level_bytes));
      MADAM_RETURN_IF_ERROR(r.GetBytes((static_cast<size_t>(n) + 7) / 8, &sign_bytes));
      auto levels = UnpackBits(level_bytes, n, static_cast<int>(bits));
      auto signs = UnpackBits(sign_bytes, n, 1);
      std::vector<int32_t> k(levels.begin(), levels.end());
      auto kt = torch::tensor(k, torch::kInt).reshape(shape);
      std::vector<float> sv(signs.size());
      for (size_t i = 0; i < signs.size(); ++i) sv[i] = signs[i] ? -1.0f : 1.0f;
      auto st = torch::tensor(sv, torch::kFloat).reshape(shape);
      // The same float arithmetic the optimiser uses to put a weight on its ladder.
      value = st * (torch::exp(kt.to(torch::kFloat) * static_cast<float>(-base_lr)) *
                    static_cast<float>(sigma));
    } else if (kind == kFloatParam || kind == kFloatBuffer) {
      std::string bytes;
      MADAM_RETURN_IF_ERROR(r.GetBytes(static_cast<size_t>(n) * sizeof(float), &bytes));
      value = torch::empty(shape, torch::kFloat);
      std::memcpy(value.data_ptr<float>(), bytes.data(), bytes.size());
    } else {
      return Status::DataLoss(path + ": unknown entry kind for " + name);
    }
    target.copy_(value.to(target.dtype()));
  }
  return Status::Ok();
}

}  // namespace madam::worker
