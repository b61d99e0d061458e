# Multi-stage build of the three binaries: api, worker and the WATI sandbox.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/api target/release/worker target/release/wati-sandbox /out/

FROM debian:bookworm-slim
# ca-certificates for WATI over TLS; curl for container health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
USER 65534:65534
CMD ["api"]
