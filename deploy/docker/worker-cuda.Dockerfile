# madam-worker for GPU nodes: Debian 12 with a CUDA LibTorch, the one in the
# PyTorch wheel (ARCHITECTURE.md section 10: build against a CUDA LibTorch
# with CMAKE_PREFIX_PATH from torch.utils.cmake_prefix_path). Build from the
# repository root:
#   docker build -f deploy/docker/worker-cuda.Dockerfile -t madam-worker-cuda .
# Run with the NVIDIA Container Toolkit (docker run --gpus all ...); the
# host's driver must support the wheel's CUDA version (12.6 by default).
# Wheels from 2.7 on use the C++11 string ABI that Debian's gRPC, Protobuf
# and yaml-cpp are built with; older wheels do not link.
# Debian packages come from deploy/packages/ only (deploy/checks/dockerfiles.py
# keeps it that way); the CUDA toolkit comes from NVIDIA's Debian 12
# repository, the wheel from download.pytorch.org.

FROM debian:bookworm-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
ARG CUDA_REPO=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64
ARG CUDA_TOOLKIT=cuda-toolkit-12-6
ARG TORCH_VERSION=2.7.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
COPY deploy/packages/ /tmp/packages/
# Debian's CPU LibTorch and its BLAS are left out: the wheel brings its own.
RUN apt-get update \
 && sed -e 's/#.*//' -e '/^[[:space:]]*$/d' /tmp/packages/build.txt /tmp/packages/cuda-build.txt \
    | grep -vx -e libtorch-dev -e libopenblas0-openmp \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
# find_package(Torch) of a CUDA LibTorch needs the CUDA toolkit (nvcc, headers).
ADD ${CUDA_REPO}/cuda-keyring_1.1-1_all.deb /tmp/cuda-keyring.deb
RUN dpkg -i /tmp/cuda-keyring.deb \
 && apt-get update \
 && apt-get install -y --no-install-recommends ${CUDA_TOOLKIT} \
 && rm -rf /var/lib/apt/lists/* /tmp/cuda-keyring.deb
ENV PATH=/usr/local/cuda/bin:${PATH}
RUN python3 -m venv /opt/torch \
 && /opt/torch/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DMADAM_BUILD_TESTS=OFF -DMADAM_BUILD_BENCH=OFF \
      -DCMAKE_PREFIX_PATH="$(/opt/torch/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
 && cmake --build /build --target madam-worker \
 && install -D -m 0755 -t /out /build/worker/madam-worker

FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
COPY deploy/packages/ /tmp/packages/
RUN apt-get update \
 && sed -e 's/#.*//' -e '/^[[:space:]]*$/d' /tmp/packages/runtime.txt /tmp/packages/worker-cuda.txt \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/packages
# LibTorch and the CUDA libraries it loads (cuBLAS, cuDNN, ...: the wheel's
# nvidia-* dependencies, found through LibTorch's RUNPATH), at the paths
# the binary was linked against. The driver comes from the host.
COPY --from=build /opt/torch/lib/python3.11/site-packages/torch/lib/ /opt/torch/lib/python3.11/site-packages/torch/lib/
COPY --from=build /opt/torch/lib/python3.11/site-packages/nvidia/ /opt/torch/lib/python3.11/site-packages/nvidia/
ENV LD_LIBRARY_PATH=/opt/torch/lib/python3.11/site-packages/torch/lib
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
# The uid matches runAsUser in deploy/k8s/.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/madam --no-create-home madam \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/madam /var/lib/madam/checkpoints
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV MADAM_COORDINATOR=madamd:7070
ENTRYPOINT ["/usr/local/bin/madam-worker"]
CMD ["--device=cuda:0", "--checkpoint-dir=/var/lib/madam/checkpoints"]
