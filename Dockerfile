# syntax=docker/dockerfile:1
#
# The wsgate node image: `docker build -t wsgate .` (BuildKit: Docker 23+ or buildx).
# The build stage runs `make release`, the target CI and operators use; the runtime stage is
# Debian slim with the binary, the Rust mappers, the dashboard and the default config, run by a
# non-root numeric user. It works with a read-only root filesystem: the node writes only its
# compiled-mapper cache, in /var/cache/wsgate (mount a volume or tmpfs there, see deploy/k8s/).

ARG RUST_VERSION=1.95
ARG NODE_MAJOR=20
ARG DEBIAN_RELEASE=bookworm

# Node.js 20 and npm for the dashboard's build (Debian bookworm ships Node.js 18).
FROM node:${NODE_MAJOR}-${DEBIAN_RELEASE}-slim AS node

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build

# librdkafka is built from source by rdkafka-sys with its ./configure and make (the `cmake-build`
# feature is off), with zlib as its only system library; TLS everywhere is rustls, so neither
# cmake nor libssl is needed.
# DL3008 (pin apt versions): the base tag pins the Debian release; exact versions break on updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version

WORKDIR /src

# The wasm32-wasip2 target in a layer of its own, kept while the sources change.
COPY Makefile ./
RUN make wasm-target

# Downloads (crates, npm packages) are cached across builds; target/ is not, so no artifact of an
# earlier build (a mapper since removed) can reach the image.
COPY . .
RUN --mount=type=cache,id=wsgate-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=wsgate-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=wsgate-npm,target=/root/.npm \
    make release

FROM debian:${DEBIAN_RELEASE}-slim

# curl is the HEALTHCHECK's client (the wsgate CLI has no health command); ca-certificates for
# TLS to Redis, NATS and brokers. The binary links only glibc, libgcc_s and zlib, all in the base
# image.
# DL3008 (pin apt versions): the base tag pins the Debian release; exact versions break on updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric user, so `runAsNonRoot` can verify it; the cache directory is its own (0700).
RUN groupadd --system --gid 10001 wsgate \
 && useradd --system --uid 10001 --gid wsgate --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin wsgate \
 && install -d -o wsgate -g wsgate -m 0700 /var/cache/wsgate

# Everything shipped is root's and read-only to the node.
COPY --from=build /src/target/release/wsgate /usr/local/bin/wsgate
COPY --from=build /src/target/mappers/ /usr/share/wsgate/mappers/
COPY --from=build /src/target/dashboard/ /usr/share/wsgate/dashboard/
COPY config/gateway.json /etc/wsgate/gateway.json

# The cache is a subdirectory the node creates 0700: a volume's own root (an emptyDir is 0777,
# a tmpfs 1777) is writable by others, and the node refuses such a cache directory.
ENV WSGATE_LISTEN=0.0.0.0:8080 \
    WSGATE_ADMIN_LISTEN=0.0.0.0:8081 \
    WSGATE_CONFIG=/etc/wsgate/gateway.json \
    WSGATE_MAPPERS_DIR=/usr/share/wsgate/mappers \
    WSGATE_DASHBOARD_DIR=/usr/share/wsgate/dashboard \
    WSGATE_MAPPER_CACHE_DIR=/var/cache/wsgate/mappers

USER 10001:10001
EXPOSE 8080 8081

# Liveness on the admin port above (moving WSGATE_ADMIN_LISTEN means changing it here too).
# Kubernetes ignores HEALTHCHECK and uses its own probes (deploy/k8s/).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "--max-time", "2", "-o", "/dev/null", "http://127.0.0.1:8081/healthz"]

# Exec form: the node is PID 1 and receives SIGTERM itself (it installs SIGTERM and SIGINT
# handlers and drains). No init (tini) is needed: wsgate starts no child processes, so there
# are no zombies to reap. SIGTERM is Docker's default; it is named here because the drain
# depends on it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/wsgate"]
CMD ["serve"]
