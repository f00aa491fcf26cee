# madamd and madamctl on Debian 12. Build from the repository root:
#   docker build -f deploy/docker/coordinator.Dockerfile -t madam-coordinator .
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
 && cmake --build /build --target madamd madamctl \
 && install -D -m 0755 -t /out /build/server/madamd /build/cli/madamctl

FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
COPY deploy/packages/ /tmp/packages/
RUN apt-get update \
 && sed -e 's/#.*//' -e '/^[[:space:]]*$/d' /tmp/packages/runtime.txt \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/packages
# The uid matches runAsUser in deploy/k8s/.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/madam --no-create-home madam \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/madam /var/lib/madam/checkpoints /run/madam
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
# gRPC; HTTP (dashboard, /metrics) stays on loopback unless run with
# --http=0.0.0.0:7071 and --auth-tokens (HTTP then needs a reader token;
# deploy/k8s/ does, behind a NetworkPolicy).
EXPOSE 7070
VOLUME ["/var/lib/madam"]
ENTRYPOINT ["/usr/local/bin/madamd"]
CMD ["--listen=0.0.0.0:7070", "--http=127.0.0.1:7071", "--db=/var/lib/madam/madam.db", \
     "--checkpoint-dir=/var/lib/madam/checkpoints", "--auth-tokens=/run/madam/auth-tokens"]
