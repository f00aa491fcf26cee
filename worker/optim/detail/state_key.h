// The key of torch::optim::Optimizer::state_ for one parameter.
//
// LibTorch 1.x keys optimiser state by a string of the TensorImpl pointer;
// 2.x keys it by the pointer itself. The static_assert makes a wrong guess
// fail to compile instead of silently missing state.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/version.h>

#include <string>
#include <type_traits>
#include <utility>

namespace madam {
namespace optim {
namespace detail {

#if TORCH_VERSION_MAJOR < 2
using StateKey = std::string;
inline StateKey KeyOf(const at::Tensor& param) {
  return c10::guts::to_string(param.unsafeGetTensorImpl());
}
#else
using StateKey = void*;
inline StateKey KeyOf(const at::Tensor& param) { return param.unsafeGetTensorImpl(); }
#endif

using StateMap = std::remove_reference_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;
static_assert(std::is_same_v<typename StateMap::key_type, StateKey>,
              "torch::optim::Optimizer::state_ key type changed: update KeyOf for this LibTorch");

}  // namespace detail
}  // namespace optim
}  // namespace madam
