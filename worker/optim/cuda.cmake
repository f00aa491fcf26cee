# Whether madam::optim builds its fused CUDA kernels (worker/optim/cuda_kernels.cu).
#
# Included from the top-level CMakeLists.txt right after find_package(Torch):
# CMake wants a language enabled in the highest directory whose targets use
# it, and every binary that links madam::optim links these objects.
#
#   MADAM_OPTIM_CUDA=AUTO (default)  build them when LibTorch has CUDA and a CUDA
#                                    compiler is found; otherwise CUDA tensors
#                                    take the eager tensor-op path
#   MADAM_OPTIM_CUDA=ON              the same, but a missing piece is an error
#   MADAM_OPTIM_CUDA=OFF             never
#
# Sets MADAM_OPTIM_WITH_CUDA (ON/OFF) for worker/optim/CMakeLists.txt and the
# package config. Debian's LibTorch has no CUDA, so there this is a no-op.
# For a GPU build: -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch;
# print(torch.utils.cmake_prefix_path)') and, ideally, the CUDA toolkit of the
# same major version as LibTorch's (-DCMAKE_CUDA_ARCHITECTURES=native builds
# for the GPU at hand).
set(MADAM_OPTIM_CUDA "AUTO" CACHE STRING "Build madam::optim's fused CUDA kernels: AUTO, ON or OFF")
set_property(CACHE MADAM_OPTIM_CUDA PROPERTY STRINGS AUTO ON OFF)

set(MADAM_OPTIM_WITH_CUDA OFF)
if(NOT MADAM_OPTIM_CUDA STREQUAL "OFF")
  # A CUDA LibTorch defines the torch_cuda target and TORCH_CUDA_LIBRARIES
  # (c10_cuda and the CUDA runtime), all in TORCH_LIBRARIES.
  if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
    include(CheckLanguage)
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      enable_language(CUDA)
      find_package(CUDAToolkit REQUIRED)
      set(MADAM_OPTIM_WITH_CUDA ON)
    elseif(MADAM_OPTIM_CUDA STREQUAL "ON")
      message(FATAL_ERROR "MADAM_OPTIM_CUDA=ON: LibTorch has CUDA but no CUDA compiler was found "
                          "(set CMAKE_CUDA_COMPILER or put nvcc on PATH)")
    else()
      message(WARNING "LibTorch has CUDA but no CUDA compiler was found: madam::optim steps CUDA "
                      "tensors with tensor ops, not its fused kernels")
    endif()
  elseif(MADAM_OPTIM_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MADAM_OPTIM_CUDA=ON but the LibTorch found (${Torch_DIR}) has no CUDA")
  endif()
endif()
message(STATUS "madam::optim fused CUDA kernels: ${MADAM_OPTIM_WITH_CUDA}")
