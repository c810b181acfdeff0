# Multi-stage build: compile with the full toolchain, ship the stripped binary on a distroless
# runtime (glibc, CA roots, no shell, no package manager) as a non-root user.
#
# Base images are pinned to a specific version tag. For a production pipeline, also pin the
# digests your registry resolves them to (`FROM image:tag@sha256:...`) and let a bot bump both.
# Build:  docker build -t tiktok-gateway:0.1.0 .
# Run:    see README.md, "Container" (mounts for certificates, secrets and the state directory).

FROM rust:1.95.0-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# 1. Dependencies only, cached until Cargo.toml or Cargo.lock change: build the dependency graph
#    against empty sources. Declared bench/example targets must exist for Cargo to read the
#    manifest, so those folders come in now (they change rarely).
COPY Cargo.toml Cargo.lock ./
# The patched crates of Cargo.toml's [patch.crates-io] (patches/*/PATCHED.md).
COPY patches ./patches
COPY benches ./benches
COPY examples ./examples
RUN mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --no-default-features --bin tiktok-gateway \
    && rm -rf src target/release/tiktok-gateway* target/release/deps/tiktok_gateway-* \
              target/release/deps/libtiktok_gateway-* target/release/.fingerprint/tiktok-gateway-*

# 2. The gateway itself. Only the sources above were faked, so only this crate is rebuilt.
#    Production build: without the default `demo` feature, so the image holds no sandbox, no demo
#    and no dev identity provider; the check fails the build if a private key or dev code got in.
COPY src ./src
COPY .ci ./.ci
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --no-default-features --bin tiktok-gateway \
    && .ci/check-release-binary --binary target/release/tiktok-gateway \
    && mkdir -p /out/state \
    && cp target/release/tiktok-gateway /out/tiktok-gateway

# `nonroot` is uid/gid 65532 in distroless images.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tiktok-gateway /usr/local/bin/tiktok-gateway
COPY deploy/container/gateway.yaml /etc/tiktok-gateway/config/gateway.yaml
# The state directory (webhook queue, token store) must be writable by the gateway; mount a volume
# here so it outlives the container.
COPY --from=build --chown=65532:65532 /out/state /var/lib/tiktok-gateway
# Certificates (/etc/tiktok-gateway/certs) and secrets (/etc/tiktok-gateway/secrets) are mounted
# at run time, never baked in.
USER 65532:65532
WORKDIR /var/lib/tiktok-gateway
VOLUME ["/var/lib/tiktok-gateway"]
# 8443: public TLS listener; 9090: metrics, /healthz, /readyz. Egress (8080) and admin (9443)
# listen on loopback only: reachable from the same pod / network namespace, not published.
EXPOSE 8443 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/tiktok-gateway", "health", "--url", "http://127.0.0.1:9090/healthz", "--timeout", "2s"]
ENTRYPOINT ["/usr/local/bin/tiktok-gateway"]
CMD ["run", "--config", "/etc/tiktok-gateway/config/gateway.yaml"]
