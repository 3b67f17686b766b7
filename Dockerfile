# syntax=docker/dockerfile:1
#
# The lameduck image: one static, stripped x86_64-unknown-linux-musl binary,
# /lameduck, and nothing else (the default policy is inside it).
#
#   docker build -t lameduck:0.1.0 .
#
# Use it as the source of the binary, never as an app image of its own:
#   in a Dockerfile:  COPY --from=lameduck:0.1.0 /lameduck /usr/local/bin/lameduck
#   in a pod:         an init container copies it into an emptyDir
#                     (deploy/existing-image.yaml).
#
# The build stage runs scripts/build-static.sh, the same script a developer
# and CI run: build, check that the result is static and stripped, print its
# size, then run it once (load the built-in policy, supervise /bin/true).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# musl-gcc for the C code in dependencies; `file` for the static check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools file \
 && rm -rf /var/lib/apt/lists/*
# host/build.rs builds the built-in policies for wasm32-wasip2 with a nested cargo.
RUN rustup target add wasm32-wasip2 x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# The target dir is a cache mount, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-static.sh \
 && cp target/musl/x86_64-unknown-linux-musl/dist/lameduck /lameduck

FROM scratch
COPY --from=build /lameduck /lameduck
ENTRYPOINT ["/lameduck"]
CMD ["--help"]
