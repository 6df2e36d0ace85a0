# syntax=docker/dockerfile:1
# Easel's container image (docs/deployment.md, "The container image").
#
#   docker build -t easel:0.1.0 .                                   # CPU
#   docker build --build-arg VARIANT=cuda -t easel:0.1.0-cuda .     # NVIDIA GPU
#
# The binary runs from /opt/easel, where the bundled models are, so the
# default relative paths (models/easel-emoji, models/open-nsfw/open_nsfw.onnx)
# work as they do from the repository root. Data goes to /var/lib/easel.

# cpu or cuda: picks the build and runtime stages below.
ARG VARIANT=cpu
ARG RUST_VERSION=1.95
# The CUDA toolkit of the GPU image: a version cudarc 0.19 knows (11.4-12.9,
# 13.0-13.4) and the nodes' driver supports.
ARG CUDA_VERSION=12.9.1
ARG CUDA_OS=ubuntu24.04

FROM rust:${RUST_VERSION}-bookworm AS toolchain

# CPU build. The cache mounts keep the registry and target folder between
# builds (one target cache per variant: their C dependencies are compiled
# by different system compilers); the binary is copied out in the same
# step, since a cache is not part of the image.
FROM toolchain AS build-cpu
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,id=easel-target-cpu,target=/src/target \
    cargo build --release --locked -p easel-cli \
 && install -m 0755 target/release/easel /usr/local/bin/easel

# CUDA build: the same toolchain, copied from the rust image, on NVIDIA's
# development image (nvcc, headers, and lib64/stubs/libcuda.so to link
# against; the driver's libcuda.so.1 is used at run time). There is no GPU
# during `docker build`, so the compute capability is given: 80 A100,
# 89 L4/L40S, 90 H100/H200.
FROM nvidia/cuda:${CUDA_VERSION}-devel-${CUDA_OS} AS build-cuda
ARG CUDA_COMPUTE_CAP=90
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=toolchain /usr/local/rustup /usr/local/rustup
COPY --from=toolchain /usr/local/cargo /usr/local/cargo
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/cuda/bin:$PATH \
    CUDA_HOME=/usr/local/cuda CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,id=easel-target-cuda,target=/src/target \
    cargo build --release --locked -p easel-cli --features easel-engine/cuda \
 && install -m 0755 target/release/easel /usr/local/bin/easel

# Runtime bases. The CUDA one has cuBLAS, cuRAND, NVRTC and the CUDA runtime
# the binary links; the NVIDIA container toolkit adds the driver.
FROM debian:bookworm-slim AS runtime-cpu
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${CUDA_OS} AS runtime-cuda

FROM build-${VARIANT} AS build

FROM runtime-${VARIANT}
# CA roots for S3 and OTLP over HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 easel \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/easel \
      --shell /usr/sbin/nologin easel \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/easel
WORKDIR /opt/easel
COPY LICENSE NOTICE ./
COPY models/easel-emoji models/easel-emoji
COPY models/open-nsfw models/open-nsfw
COPY --from=build /usr/local/bin/easel /usr/local/bin/easel
# A container is reached from outside its loopback, so listen on every
# interface; Easel then refuses to start without API keys ([auth]) or
# auth.insecure_no_auth.
ENV EASEL_DATA_DIR=/var/lib/easel \
    EASEL_SERVER__LISTEN=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["easel"]
CMD ["serve"]
