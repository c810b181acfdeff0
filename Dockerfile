# Multi-stage build: compile with the full toolchain, ship a small runtime image as non-root.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY .ci ./.ci
# Production build: without the default `demo` feature, so the image holds no sandbox, no demo and
# no dev identity provider; the check fails the build if a private key or dev code got in anyway.
RUN cargo build --release --locked --no-default-features --bin tiktok-gateway \
    && .ci/check-release-binary --binary target/release/tiktok-gateway

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin gateway \
    && mkdir -p /etc/tiktok-gateway /var/lib/tiktok-gateway \
    && chown gateway /var/lib/tiktok-gateway
COPY --from=build /src/target/release/tiktok-gateway /usr/local/bin/tiktok-gateway
COPY gateway.yaml /etc/tiktok-gateway/gateway.yaml
# Certificates and secrets are mounted at run time (see certs/README.md), never baked in.
USER gateway
WORKDIR /etc/tiktok-gateway
EXPOSE 8443 8080 9090 9443
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["tiktok-gateway"]
CMD ["run", "--config", "/etc/tiktok-gateway/gateway.yaml"]
