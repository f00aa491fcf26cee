#!/usr/bin/env bash
# The one-time check of madam::optim's fused CUDA path, for a machine with a
# GPU and a CUDA build of PyTorch (2.x) whose LibTorch CMake package is used:
#   1. configure and build madam_optim, optim_test and optim_bench against
#      that LibTorch with the fused CUDA kernels required (MADAM_OPTIM_CUDA=ON);
#   2. run the optimiser tests: the golden cases on every path (CPU fused and
#      eager, CUDA fused and eager), the CUDA kernels against the CPU kernels
#      bit for bit, whole optimisers on CUDA against their CPU runs; a CUDA
#      test that is skipped here is a failure of this check;
#   3. time Madam and IntegerMadam (fused CUDA) against torch::optim::Adam
#      and the eager tensor-op Madam on the ResNet-18 shapes on the GPU, with
#      the Python peers (torch.optim.Adam foreach and fused, a per-op Madam),
#      run twice as optim_bench.sh does.
# Prints everything it runs; its output is the note to keep.
#
# Usage: tests/bench/cuda_check.sh [build_dir]    (default build-cuda)
# Env:   PYTHON (a python3 whose torch has CUDA; default python3),
#        CUDA_ARCHS (CMAKE_CUDA_ARCHITECTURES; default native), JOBS (default nproc).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../.." && pwd)"
build="${1:-$src/build-cuda}"
python="${PYTHON:-python3}"
archs="${CUDA_ARCHS:-native}"
jobs="${JOBS:-$(nproc)}"

step() { echo; echo "=== $*"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*/CPU: /p' | head -1
command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc not on PATH (CMake may still find it)"
"$python" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU available: {torch.cuda.is_available()}")
if not torch.cuda.is_available():
    raise SystemExit("this python's torch sees no GPU: run where one is, or set PYTHON")
print("cmake prefix:", torch.utils.cmake_prefix_path)
EOF
prefix="$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
torch_cuda="$("$python" -c 'import torch; print(torch.version.cuda or "")')"
if command -v nvcc >/dev/null; then
  nvcc_major="$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
  if [[ -n "$torch_cuda" && "${torch_cuda%%.*}" != "$nvcc_major" ]]; then
    echo "warning: nvcc is CUDA $nvcc_major but torch was built with CUDA $torch_cuda;" \
         "two CUDA runtimes in one process may not mix (use the matching toolkit)" >&2
  fi
fi

step "configure ($build) against $prefix"
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DMADAM_OPTIM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$archs"

step "build"
cmake --build "$build" -j"$jobs" --target optim_test optim_bench

step "optimiser tests (golden cases on every path)"
# The CUDA tests skip only without a GPU or without the kernels: here either
# is a failure of the check.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$build/tests/unit/optim/optim_test" 2>&1 | tee "$log"
if grep -q "SKIPPED \]" "$log"; then
  echo "cuda_check: tests were skipped above; the CUDA path was not checked" >&2
  exit 1
fi

step "step time on the GPU: ResNet-18 shapes, two runs"
export PYTHON="$python"
"$here/optim_bench.sh" "$build/tests/bench/optim_bench" --device cuda --only resnet18 --rounds 25 --steps 5

step "the same on this machine's CPU, one thread, for reference"
NO_PEER=1 "$here/optim_bench.sh" "$build/tests/bench/optim_bench" --only resnet18

echo
echo "cuda_check: done"
