# syntax=docker/dockerfile:1
# The one Steward image: the `steward` binary holds every component; the Helm
# chart (charts/steward) runs `steward serve <component>` and `steward migrate all`.
#
#   docker build -t steward:0.1.0 .
#
# Build: the workspace's Rust toolchain on Debian bookworm. protox compiles the
# protos (no protoc); PostgreSQL is spoken natively (no libpq, no OpenSSL).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p steward \
    && install -D -m 0755 target/release/steward /out/steward

# Run: distroless glibc base (libgcc, no shell, no package manager), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/steward /usr/local/bin/steward
# 65532 is distroless' `nonroot`; the chart's securityContext matches it.
USER 65532:65532
# gateway, accounts, billing, quotas, audit, notifications
EXPOSE 50050 50051 50052 50053 50054 50055
ENTRYPOINT ["/usr/local/bin/steward"]
CMD ["--help"]
