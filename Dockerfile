# Multi-stage build. The default target, `runtime`, is the production image: the api
# and the worker only. The WATI sandbox (which hands out every code it receives) has an
# image of its own, `--target sandbox`, that only a development stack uses.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir -p /out/runtime /out/sandbox \
 && cp target/release/api target/release/worker /out/runtime/ \
 && cp target/release/wati-sandbox /out/sandbox/

FROM debian:bookworm-slim AS base
# ca-certificates for WATI over TLS; curl for container health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
USER 65534:65534

FROM base AS sandbox
COPY --from=build /out/sandbox/ /usr/local/bin/
CMD ["wati-sandbox"]

FROM base AS runtime
COPY --from=build /out/runtime/ /usr/local/bin/
CMD ["api"]
