#!/usr/bin/env bash
# The whole GPU measurement of issue 14 in one command, on a machine with an
# NVIDIA GPU: build `easel` with CUDA, run the engine's golden tests on the
# GPU, and run `easel bench engine --device cuda --reference` (Easel against
# diffusers on the same GPU) on the bundled model and on SD 1.5 with random
# weights. Everything it learns goes into OUT.
#
#   tools/cuda/gpu-check.sh OUT [options]
#   tools/cuda/gpu-check.sh --prepare DIR        # on a build machine, no GPU needed
#
# Options:
#   --prebuilt DIR   run the binaries `--prepare DIR` made instead of building
#                    (for a GPU machine without cargo or without internet)
#   --python PATH    Python with torch (a CUDA build), diffusers, transformers
#                    and open_clip_torch, for the reference and for making the
#                    model (default: $EASEL_BENCH_PYTHON, else python3)
#   --wheels DIR     install these wheels (pip --no-index --no-deps) into a
#                    temporary folder on PYTHONPATH first: the packages the
#                    GPU machine's Python lacks (`--prepare` downloads them)
#   --venv DIR       make DIR a venv with the pinned reference packages
#                    (PIP_PINS below) from the package index, and use it;
#                    needs internet
#   --model DIR      SD 1.5 folder (default .cache/sd15-random; made with
#                    tools/bench/make_sd15_random.py when missing, ~4.3 GB)
#   --repeats N      timed calls per stage (default 3); --warmup N (default 1)
#   --steps LIST     comma-separated subset of: build,golden,bundled,model,sd15
#                    (default: all, in that order)
#   --cuda-env VENV  the venv of CUDA compiler wheels build-check.sh makes,
#                    used when no nvcc is on PATH (default .cache/cudaenv)
#
# OUT receives at most 7 files (what a remote runner returns):
#   summary.txt      machine, versions, each step's status and time, ratios
#   build.log        cargo's output (or the prebuilt binaries' ldd)
#   golden.log       the golden tests on the GPU (EASEL_TEST_DEVICE=cuda)
#   bench.txt        both benches' tables, Easel and diffusers side by side
#   bench.json       their JSON reports, one per line, each labelled
#   reference.log    the reference's Python: pip list, model making, stderr
#   gpu-memory.csv   nvidia-smi's memory.used/utilisation every 250 ms
#                    while the benches ran (device memory of both processes;
#                    Easel's own reports measure host RSS only)
#
# The exit status is 0 only when every step asked for passed. Environment:
# CUDA_COMPUTE_CAP (default: from nvidia-smi), JOBS (cargo -j, default
# nproc), CARGO_TARGET_DIR (default target/gpu-check), PROFILE (cargo
# profile, default release; `dev` reuses build-check.sh's builds),
# GPU_CHECK_DEVICE=cpu (the same steps on the CPU with no GPU: to test this
# script, with --prebuilt binaries of a CPU build).
#
# shellcheck disable=SC2317  # the step functions run through `step NAME LOG fn`
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/tools/cuda
# The reference's packages when --venv makes the environment. torch's PyPI
# wheel for Linux is its CUDA build.
PIP_PINS=(torch==2.15.0 diffusers==0.42.1 transformers==5.25.0 safetensors==0.8.0
          open_clip_torch==3.3.0)
# What --prepare downloads for a GPU machine whose Python already holds
# torch, transformers and safetensors (this project's GPU image, Python 3.12):
# diffusers and open_clip_torch (make_sd15_random.py reads CLIP's BPE from
# it) and the dependencies that image lacks.
WHEEL_PINS=(diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.2.14
            importlib_metadata==8.7.0)

usage() { sed -n '2,47p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "gpu-check: $*" >&2; exit 2; }

OUT=
PREPARE=
PREBUILT=
PYTHON=${EASEL_BENCH_PYTHON:-python3}
WHEELS=
VENV=
MODEL=$REPO/.cache/sd15-random
REPEATS=3
WARMUP=1
STEPS=build,golden,bundled,model,sd15
CUDA_ENV=$REPO/.cache/cudaenv
while [ $# -gt 0 ]; do
    case "$1" in
        --prepare) PREPARE=${2:?}; shift ;;
        --prebuilt) PREBUILT=$(cd "${2:?}" && pwd) || die "no folder $2"; shift ;;
        --python) PYTHON=${2:?}; shift ;;
        --wheels) WHEELS=$(cd "${2:?}" && pwd) || die "no folder $2"; shift ;;
        --venv) VENV=${2:?}; shift ;;
        --model) MODEL=${2:?}; shift ;;
        --repeats) REPEATS=${2:?}; shift ;;
        --warmup) WARMUP=${2:?}; shift ;;
        --steps) STEPS=${2:?}; shift ;;
        --cuda-env) CUDA_ENV=${2:?}; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$OUT" ] || die "two output folders: $OUT and $1"; OUT=$1 ;;
    esac
    shift
done
# A relative --python keeps working after the build's `cd` (not realpath:
# a venv's python is a symlink out of the venv).
case "$PYTHON" in
    /*) ;;
    */*) PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON") ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target/gpu-check}
JOBS=${JOBS:-$(nproc)}
PROFILE=${PROFILE:-release}
case "$PROFILE" in dev) PROFILE_DIR=debug ;; *) PROFILE_DIR=$PROFILE ;; esac

# The CUDA compiler: the machine's toolkit when nvcc is on PATH (or under
# CUDA_HOME), else NVIDIA's wheels through build-check.sh (which needs the
# package index the first time, and makes a libcuda stub to link against).
cuda_build_env() {
    if [ -z "${NVCC:-}" ] && ! command -v nvcc >/dev/null && [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
        export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
        export PATH=$CUDA_HOME/bin:$PATH
    fi
    if [ -z "${NVCC:-}" ] && ! command -v nvcc >/dev/null; then
        echo "no nvcc on PATH: using the CUDA wheels of build-check.sh in $CUDA_ENV"
        local exports
        exports=$(CARGO_TARGET_DIR=$CARGO_TARGET_DIR "$HERE/build-check.sh" "$CUDA_ENV" --link --env) ||
            { echo "build-check.sh --link --env failed (it needs the package index the first time)"; return 1; }
        eval "$exports"
    fi
    echo "nvcc: $(${NVCC:-nvcc} --version | grep release)"
}

# Builds the golden test binary (errors readable in the log), then prints
# its path (a second, fresh call with JSON messages). Extra arguments go to
# cargo (`nice -n 19` where the machine is shared).
golden_binary() {
    (cd "$REPO" && "$@" cargo test --locked --profile "$PROFILE" -j "$JOBS" -p easel-engine --features cuda \
        --test golden --no-run >&2) || return 1
    (cd "$REPO" && cargo test --locked --profile "$PROFILE" -j "$JOBS" -p easel-engine --features cuda \
        --test golden --no-run --message-format=json) |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1
}

# ---------------------------------------------------------------- --prepare
if [ -n "$PREPARE" ]; then
    # Binaries and wheels for a GPU machine that cannot build or download:
    # `easel`, the golden test binary, and WHEEL_PINS for CPython 3.12.
    mkdir -p "$PREPARE/wheels" && PREPARE=$(cd "$PREPARE" && pwd)
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
    cuda_build_env || exit 1
    cd "$REPO" || exit 1
    # A build machine may be shared: -j and nice as asked.
    nice -n 19 cargo build --locked --profile "$PROFILE" -j "$JOBS" -p easel-cli --features easel-engine/cuda || exit 1
    exe=$(golden_binary nice -n 19)
    [ -n "$exe" ] || die "no golden test binary from cargo test --no-run"
    cp "$CARGO_TARGET_DIR/$PROFILE_DIR/easel" "$PREPARE/easel" && cp "$exe" "$PREPARE/golden" || exit 1
    strip "$PREPARE/easel" "$PREPARE/golden" || true
    {
        echo "commit=$(git rev-parse HEAD)$(git diff --quiet HEAD || echo '+dirty')"
        # The test binary finds its fixtures through this compile-time path.
        echo "manifest_dir=$REPO/crates/engine"
        echo "cuda_compute_cap=$CUDA_COMPUTE_CAP profile=$PROFILE"
        echo "built=$(date -u +%FT%TZ) on $(uname -m), $(ldd --version | head -1)"
    } > "$PREPARE/build-info.txt"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d "$PREPARE/wheels" "${WHEEL_PINS[@]}" || exit 1
    ls -l "$PREPARE" "$PREPARE/wheels"
    echo "ready: carry $PREPARE and run tools/cuda/gpu-check.sh OUT --prebuilt $PREPARE --wheels $PREPARE/wheels"
    exit 0
fi

# ---------------------------------------------------------------- the check
[ -n "$OUT" ] || { usage >&2; exit 2; }
mkdir -p "$OUT" || die "cannot write $OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
FAILED=0
say() { echo "$*" | tee -a "$SUMMARY"; }
wants() { [[ ",$STEPS," == *",$1,"* ]]; }

# step NAME LOG CMD...: runs CMD with its output appended to LOG, records
# the status and the time in the summary, and remembers a failure.
step() {
    local name=$1 log=$2 start rc
    shift 2
    start=$(date +%s)
    echo "== $name: $*" >> "$log"
    "$@" >> "$log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        say "step $name: ok ($(($(date +%s) - start)) s)"
    else
        say "step $name: FAILED, exit $rc ($(($(date +%s) - start)) s); see $(basename "$log")"
        FAILED=1
    fi
    return "$rc"
}
skip() { say "step $1: SKIPPED: $2"; FAILED=1; }

say "gpu-check $(date -u +%FT%TZ), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown), steps $STEPS"
DEVICE=${GPU_CHECK_DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then
    say "GPU_CHECK_DEVICE=cpu: a dry run of this script on the CPU, not a GPU measurement"
    nvidia-smi() { echo "no GPU (GPU_CHECK_DEVICE=cpu)"; }
elif ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >> "$SUMMARY" 2>&1; then
    say "no NVIDIA GPU answers nvidia-smi: this script measures on a GPU;"
    say "for a compile and link check without one, run tools/cuda/build-check.sh --link"
    exit 1
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.max.sm --format=csv
    echo "host: $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo), $(ldd --version | head -1)"
    echo "cargo: $(cargo --version 2>&1 | head -1); nvcc: $(nvcc --version 2>&1 | grep release || echo none on PATH)"
} >> "$SUMMARY" 2>&1
[ "$DEVICE" = cpu ] ||
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}

# The CUDA libraries candle links (cuBLAS, cuBLASLt, cuRAND, NVRTC) may
# live only in a Python package's nvidia/ folder: put every such folder on
# the loader's path, after the system's.
cuda_runtime_path() {
    local dirs
    dirs=$("$PYTHON" - <<'EOF' 2>/dev/null
import pathlib, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"]) / "nvidia"
seen = sorted({str(p.parent) for p in site.glob("**/lib/lib*.so*")}) if site.is_dir() else []
print(":".join(seen))
EOF
)
    for d in /usr/local/cuda/lib64 "${CUDA_HOME:-/usr/local/cuda}/lib64" ${CUDA_ROOT:+"$CUDA_ROOT/lib64"}; do
        [ -d "$d" ] && dirs=${dirs:+$dirs:}$d
    done
    export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$dirs
}

# ---- build (or take the prebuilt binaries)
EASEL=$CARGO_TARGET_DIR/$PROFILE_DIR/easel
GOLDEN=
do_build() {
    cuda_build_env || return 1
    echo "CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP CARGO_TARGET_DIR=$CARGO_TARGET_DIR JOBS=$JOBS"
    cd "$REPO" || return 1
    cargo build --locked --profile "$PROFILE" -j "$JOBS" -p easel-cli --features easel-engine/cuda || return 1
    GOLDEN=$(golden_binary)
    [ -n "$GOLDEN" ] || { echo "no golden test binary from cargo test --no-run"; return 1; }
}
use_prebuilt() {
    cat "$PREBUILT/build-info.txt"
    EASEL=$PREBUILT/easel GOLDEN=$PREBUILT/golden
    local dir
    dir=$(sed -n 's/^manifest_dir=//p' "$PREBUILT/build-info.txt")
    # The test binary reads its fixtures under the build's source path.
    if [ ! -d "$dir/tests/fixtures" ]; then
        echo "linking $dir -> $REPO/crates/engine (the test binary's fixture path)"
        mkdir -p "$(dirname "$dir")" && ln -sfn "$REPO/crates/engine" "$dir" || return 1
    fi
    cuda_runtime_path
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd "$EASEL"
    if ldd "$EASEL" | grep -q 'not found'; then
        echo "missing libraries above: install the CUDA toolkit's or the nvidia-* wheels' libraries"
        return 1
    fi
}
if [ -n "$PREBUILT" ]; then
    step build "$OUT/build.log" use_prebuilt
elif wants build; then
    step build "$OUT/build.log" do_build
else
    say "step build: not asked; using $EASEL"
fi
if [ -z "$GOLDEN" ]; then
    # An earlier build's newest golden test binary.
    for f in "$CARGO_TARGET_DIR/$PROFILE_DIR"/deps/golden-*; do
        case "$f" in *.d) continue ;; esac
        if [ -x "$f" ] && { [ -z "$GOLDEN" ] || [ "$f" -nt "$GOLDEN" ]; }; then
            GOLDEN=$f
        fi
    done
fi
cuda_runtime_path

# ---- golden tests on the GPU
if wants golden; then
    if [ -x "$GOLDEN" ]; then
        step golden "$OUT/golden.log" env EASEL_TEST_DEVICE="$DEVICE" "$GOLDEN" --test-threads 1
        grep -E '^test result' "$OUT/golden.log" | tee -a "$SUMMARY"
    else
        skip golden "no golden test binary (build failed or not asked)"
    fi
fi

# ---- the reference's Python
PY_OK=0
setup_python() {
    if [ -n "$VENV" ]; then
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || return 1
        "$VENV/bin/pip" install -q "${PIP_PINS[@]}" || return 1
        PYTHON=$VENV/bin/python
    fi
    if [ -n "$WHEELS" ]; then
        local site=${TMPDIR:-/tmp}/gpu-check-site
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade \
            --target "$site" "$WHEELS"/*.whl || return 1
        export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    fi
    echo "python: $PYTHON, PYTHONPATH=${PYTHONPATH:-}"
    "$PYTHON" -m pip list 2>/dev/null | grep -i -E '^(torch|diffusers|transformers|safetensors|open.clip.torch|numpy|nvidia-cublas|nvidia-cudnn)[ -]'
    "$PYTHON" - "$DEVICE" <<'EOF'
import sys
missing = []
for name in ("torch", "diffusers", "transformers"):
    try:
        __import__(name)
    except Exception as e:
        missing.append(f"{name} ({e})")
if missing:
    sys.exit("the reference Python lacks: " + ", ".join(missing) + " (use --venv, --wheels or --python)")
import torch
if not torch.cuda.is_available():
    if sys.argv[1] == "cpu":
        sys.exit(print(f"torch {torch.__version__}, CPU dry run"))
    sys.exit(f"torch {torch.__version__} sees no CUDA GPU (a CPU-only build?)")
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees {torch.cuda.get_device_name(0)}")
EOF
}
if wants bundled || wants model || wants sd15; then
    step python "$OUT/reference.log" setup_python && PY_OK=1
fi

# ---- benches: Easel on CUDA against diffusers on CUDA, same process tree
MEM_PID=
watch_memory() {
    nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 250 \
        >> "$OUT/gpu-memory.csv" 2>&1 &
    MEM_PID=$!
}
bench() {
    local label=$1 model=$2 ref=()
    shift 2
    [ "$PY_OK" = 1 ] && ref=(--reference --python "$PYTHON" --script "$REPO/tools/bench/diffusers_bench.py")
    echo "# $label $(date -u +%T)" >> "$OUT/gpu-memory.csv"
    # EASEL_BENCH_DEVICE: the reference runs on the same GPU even where the
    # CLI passes no --device to the script.
    EASEL_BENCH_DEVICE=$DEVICE "$EASEL" bench engine --model "$model" --device "$DEVICE" \
        --repeats "$REPEATS" --warmup "$WARMUP" --json "${ref[@]}" "$@" \
        > "$OUT/bench-$label.out" 2>> "$OUT/reference.log"
    local rc=$?
    { echo "### $label"; grep -v '^{' "$OUT/bench-$label.out"; } >> "$OUT/bench.txt"
    # With --json the engine's report comes first, then the reference's.
    grep '^{' "$OUT/bench-$label.out" | awk -v l="$label" \
        '{ print "{\"run\":\"" l "\",\"side\":\"" (NR == 1 ? "easel" : "reference") "\",\"report\":" $0 "}" }' \
        >> "$OUT/bench.json"
    rm -f "$OUT/bench-$label.out"
    return "$rc"
}
if [ "$DEVICE" != cpu ] && [ -x "$EASEL" ] && { wants bundled || wants sd15; }; then
    watch_memory
fi
if wants bundled; then
    if [ -x "$EASEL" ]; then
        step bundled "$OUT/reference.log" bench bundled "$REPO/models/easel-emoji" --full-image
    else
        skip bundled "no easel binary"
    fi
fi
if wants model && [ ! -f "$MODEL/model_index.json" ]; then
    if [ "$PY_OK" = 1 ]; then
        step model "$OUT/reference.log" "$PYTHON" "$REPO/tools/bench/make_sd15_random.py" "$MODEL"
    else
        skip model "no usable reference Python to make $MODEL with"
    fi
fi
if wants sd15; then
    if [ ! -x "$EASEL" ]; then
        skip sd15 "no easel binary"
    elif [ ! -f "$MODEL/model_index.json" ]; then
        skip sd15 "no model at $MODEL"
    else
        step sd15 "$OUT/reference.log" bench sd15 "$MODEL"
    fi
fi
if [ -n "$MEM_PID" ]; then
    kill "$MEM_PID" 2>/dev/null
    wait "$MEM_PID" 2>/dev/null
fi
[ -f "$OUT/bench.txt" ] && cat "$OUT/bench.txt" >> "$SUMMARY"
say "done $(date -u +%FT%TZ): $([ "$FAILED" = 0 ] && echo 'every step passed' || echo 'some step failed or was skipped')"
exit "$FAILED"
