// A worker's devices as it registers them with madamd and as a
// data-parallel run's ranks take them (ARCHITECTURE.md sections 5 and 6):
// one device ("cpu", "cuda:0") or a comma-separated list of them
// ("cuda:0,cuda:1"; "cpu,cpu" for two CPU ranks, `madam-worker
// --cpu-ranks 2`). Torch-free: madamd, madamctl and the worker share it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/run_config.h"
#include "common/status.h"

namespace madam {

// The entries of a device list, each "cpu" or "cuda:N" ("cuda" reads as
// "cuda:0"). Refused, naming the value: an empty list or entry, an unknown
// device, CPU and CUDA mixed, a CUDA device named twice, more than
// kMaxRunDevices entries.
Result<std::vector<std::string>> ParseDeviceList(std::string_view text);

// The devices a worker trains on, from its --device flag and --cpu-ranks:
// "auto" is cuda:0 when `cuda_devices` > 0, else cpu; "all" is every CUDA
// device (cuda:0 .. cuda:<cuda_devices - 1>), else cpu; any other value is
// a list for ParseDeviceList. cpu_ranks > 0 asks for that many CPU ranks
// and takes only --device auto or cpu. CUDA indices are checked when a run
// starts, not here.
Result<std::vector<std::string>> ResolveWorkerDevices(std::string_view device_flag,
                                                      int64_t cpu_ranks, int64_t cuda_devices);

// The list's kind ("cpu" or "cuda") from its first entry; the text before
// the first ':' or ',' (the list is not validated).
std::string DeviceListKind(std::string_view text);

// Entries in the list: one more than its commas (the list is not validated).
int64_t DeviceListSize(std::string_view text);

}  // namespace madam
