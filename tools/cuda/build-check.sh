#!/usr/bin/env bash
# Compile Easel with the `cuda` feature on a machine WITHOUT a GPU or a CUDA
# toolkit, using NVIDIA's CUDA 13.0 wheels from PyPI. This proves compilation
# (and, with --link, linking) only: nothing here runs on a GPU.
#
#   tools/cuda/build-check.sh [VENV]          # easel-engine with --features cuda
#   tools/cuda/build-check.sh [VENV] --cli    # also the `easel` binary (compile only:
#                                             # `cargo check`, no link)
#   tools/cuda/build-check.sh [VENV] --link   # also link the `easel` binary (needs the
#                                             # nvrtc/curand/cublas wheels, ~1 GB, and
#                                             # a generated libcuda stub)
#   tools/cuda/build-check.sh [VENV] --env    # only install and print the exports:
#                                             # eval "$(tools/cuda/build-check.sh --env)"
#                                             # (with --link: the link wheels and the
#                                             # libcuda stub too; gpu-check.sh uses this)
#
# VENV (default .cache/cudaenv) is a Python venv (git-ignored, or any path) that
# receives the wheels; it is created when missing.
# Environment: CUDA_COMPUTE_CAP (default 80), CARGO_TARGET_DIR (default
# target/cuda-check), CUDAFORGE_THREADS (default 2: parallel nvcc jobs).
# Every cargo/nvcc process runs under `nice -n 19`; CARGO_BUILD_JOBS=1 makes
# cargo run one job at a time on a shared machine.
set -euo pipefail

VENV=.cache/cudaenv
MODE=engine
ENV_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --cli) MODE=cli ;;
        --link) MODE="link" ;;
        --env) ENV_ONLY=1 ;;
        -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) VENV=$arg ;;
    esac
done

REPO=$(cd "$(dirname "$0")/../.." && pwd)
# Absolute: the exported PATH and CUDA_HOME must also hold in the build
# scripts, which run in their crates' folders (cudarc's runs `nvcc --version`
# through PATH and fails on a relative entry).
VENV=$(realpath -m "$VENV")

# The CUDA 13.0 compiler: the cu12 nvcc wheel (nvidia-cuda-nvcc-cu12) ships
# ptxas but no nvcc, the CUDA 13 wheels ship nvcc, cicc, headers and libcudart
# under one prefix, site-packages/nvidia/cu13. 13.0 is a version cudarc 0.19
# knows (it reads it from `nvcc --version`).
PKGS=("nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.88" "nvidia-cuda-crt==13.0.88"
      "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85")
if [ "$MODE" = link ]; then
    # candle links cudarc with `dynamic-linking`: the binary needs these at link time.
    PKGS+=("nvidia-cuda-nvrtc==13.0.88" "nvidia-curand==10.4.0.35" "nvidia-cublas==13.0.2.14")
fi

[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" >&2
nice -n 19 "$VENV/bin/pip" install -q "${PKGS[@]}" >&2

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CU=$SITE/nvidia/cu13
[ -x "$CU/bin/nvcc" ] || { echo "no nvcc under $CU" >&2; exit 1; }

# A CUDA root in the layout build scripts expect (bin/ include/ lib64/).
ROOT=$VENV/cuda-root
mkdir -p "$ROOT/lib64"
ln -sfn "$CU/bin" "$ROOT/bin"
ln -sfn "$CU/include" "$ROOT/include"
ln -sfn "$CU/nvvm" "$ROOT/nvvm"
for so in "$CU"/lib/lib*.so.*; do
    base=$(basename "$so")
    ln -sf "$so" "$ROOT/lib64/$base"
    ln -sf "$so" "$ROOT/lib64/${base%%.so.*}.so"
done

export CUDA_ROOT=$ROOT CUDA_HOME=$ROOT CUDA_PATH=$ROOT
export NVCC=$ROOT/bin/nvcc PATH=$ROOT/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target/cuda-check}

if [ "$MODE" = link ]; then
    # libcuda.so belongs to the driver, not to any wheel. Link against a stub
    # that defines every cu* symbol the objects need (the toolkit's
    # lib64/stubs/libcuda.so plays the same role); at run time the driver's
    # real libcuda.so.1 is used instead.
    STUB=$ROOT/lib64/stubs
    mkdir -p "$STUB"
    if [ ! -f "$STUB/libcuda.so" ]; then
        # The symbol list comes from cudarc's sources, which a fresh cargo
        # registry does not have yet.
        (cd "$REPO" && nice -n 19 cargo fetch --locked >&2)
        REG=$(find "${CARGO_HOME:-$HOME/.cargo}"/registry/src -maxdepth 2 -type d \
            -name cudarc-0.19.10 -print -quit)
        [ -n "$REG" ] || { echo "cudarc-0.19.10 sources not found after cargo fetch" >&2; exit 1; }
        grep -ho 'pub \(unsafe \)\?fn cu[A-Za-z0-9_]*' "$REG/src/driver/sys/mod.rs" \
            | sed 's/.* fn //' | sort -u | sed 's/.*/void &(void) {}/' > "$STUB/libcuda_stub.c"
        nice -n 19 cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB/libcuda.so" "$STUB/libcuda_stub.c"
    fi
    # cudarc's build script adds $CUDA_HOME/lib64 and lib64/stubs to the link
    # search path; lib64 already holds libnvrtc/libcurand/libcublas(Lt)/libcudart.so.
fi

if [ "$ENV_ONLY" = 1 ]; then
    for v in CUDA_ROOT CUDA_HOME CUDA_PATH NVCC PATH CUDA_COMPUTE_CAP CUDAFORGE_THREADS CARGO_TARGET_DIR; do
        printf 'export %s=%q\n' "$v" "${!v}"
    done
    exit 0
fi

echo "nvcc: $("$NVCC" --version | grep release)"
echo "CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
cd "$REPO"
set -x
nice -n 19 cargo build --locked -p easel-engine --features cuda
case "$MODE" in
    cli) nice -n 19 cargo check --locked -p easel-cli --features easel-engine/cuda ;;
    link) nice -n 19 cargo build --locked -p easel-cli --features easel-engine/cuda ;;
esac
