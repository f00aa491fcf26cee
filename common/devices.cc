#include "common/devices.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace madam {
namespace {

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

}  // namespace

Result<std::vector<std::string>> ParseDeviceList(std::string_view text) {
  if (text.empty()) return Status::InvalidArgument("device list is empty (expected cpu or cuda:N)");
  std::vector<std::string> out;
  std::set<std::string> cuda_seen;
  size_t start = 0;
  for (;;) {
    const size_t comma = text.find(',', start);
    const std::string_view entry =
        text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (entry.empty()) {
      return Status::InvalidArgument("device list " + Quoted(text) + " has an empty entry");
    }
    std::string device;
    if (entry == "cpu") {
      device = "cpu";
    } else if (entry == "cuda") {
      device = "cuda:0";
    } else if (entry.substr(0, 5) == "cuda:" && entry.size() > 5 && entry.size() <= 8 &&
               std::all_of(entry.begin() + 5, entry.end(),
                           [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
      device = "cuda:" + std::to_string(std::stoi(std::string(entry.substr(5))));
    } else {
      return Status::InvalidArgument("device " + Quoted(entry) + " in " + Quoted(text) +
                                     " is not cpu or cuda:N");
    }
    if (!out.empty() && (device == "cpu") != (out.front() == "cpu")) {
      return Status::InvalidArgument("device list " + Quoted(text) +
                                     " mixes CPU and CUDA devices: a run's ranks share one kind");
    }
    if (device != "cpu" && !cuda_seen.insert(device).second) {
      return Status::InvalidArgument("device " + device + " is named twice in " + Quoted(text));
    }
    out.push_back(device);
    if (static_cast<int64_t>(out.size()) > kMaxRunDevices) {
      return Status::InvalidArgument("device list " + Quoted(text.substr(0, 40)) + "... has more than " +
                                     std::to_string(kMaxRunDevices) + " devices");
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

Result<std::vector<std::string>> ResolveWorkerDevices(std::string_view device_flag,
                                                      int64_t cpu_ranks, int64_t cuda_devices) {
  if (cpu_ranks < 0 || cpu_ranks > kMaxRunDevices) {
    return Status::InvalidArgument("--cpu-ranks " + std::to_string(cpu_ranks) + " must be 1.." +
                                   std::to_string(kMaxRunDevices));
  }
  if (cpu_ranks > 0) {
    if (device_flag != "auto" && device_flag != "cpu") {
      return Status::InvalidArgument("--cpu-ranks takes --device cpu (or auto), got --device " +
                                     Quoted(device_flag));
    }
    return std::vector<std::string>(static_cast<size_t>(cpu_ranks), "cpu");
  }
  if (device_flag == "auto") {
    return std::vector<std::string>{cuda_devices > 0 ? "cuda:0" : "cpu"};
  }
  if (device_flag == "all") {
    if (cuda_devices <= 0) return std::vector<std::string>{"cpu"};
    std::vector<std::string> out;
    for (int64_t i = 0; i < std::min(cuda_devices, kMaxRunDevices); ++i) {
      out.push_back("cuda:" + std::to_string(i));
    }
    return out;
  }
  return ParseDeviceList(device_flag);
}

std::string DeviceListKind(std::string_view text) {
  const size_t end = text.find_first_of(":,");
  return std::string(text.substr(0, end));
}

int64_t DeviceListSize(std::string_view text) {
  return 1 + static_cast<int64_t>(std::count(text.begin(), text.end(), ','));
}

}  // namespace madam
