# madam-worker for CPU nodes on Debian 12, with Debian's LibTorch 1.13 and
# OpenBLAS. Build from the repository root:
#   docker build -f deploy/docker/worker-cpu.Dockerfile -t madam-worker-cpu .
# Packages come from deploy/packages/ only, the lists deploy/install-deps.sh
# installs for CI (deploy/checks/dockerfiles.py keeps it that way).

FROM debian:bookworm-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
COPY deploy/packages/ /tmp/packages/
RUN apt-get update \
 && sed -e 's/#.*//' -e '/^[[:space:]]*$/d' /tmp/packages/build.txt \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DMADAM_BUILD_TESTS=OFF -DMADAM_BUILD_BENCH=OFF \
 && cmake --build /build --target madam-worker \
 && install -D -m 0755 -t /out /build/worker/madam-worker

FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
COPY deploy/packages/ /tmp/packages/
RUN apt-get update \
 && sed -e 's/#.*//' -e '/^[[:space:]]*$/d' /tmp/packages/runtime.txt /tmp/packages/worker-cpu.txt \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/packages
# The uid matches runAsUser in deploy/k8s/.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/madam --no-create-home madam \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/madam /var/lib/madam/checkpoints
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV MADAM_COORDINATOR=madamd:7070
ENTRYPOINT ["/usr/local/bin/madam-worker"]
CMD ["--device=cpu", "--checkpoint-dir=/var/lib/madam/checkpoints"]
